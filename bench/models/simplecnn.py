"""The small demo CNN with a GAP (or GMP) head, trained on the generated data set.

Architecture (the "simple CNN + global average pooling" of the dogs-vs-cats CAM write-ups:
four conv blocks, then GAP and one linear layer), at input ``S = 128``:

==========  ======================================================  ================
block       layers                                                  output at 128
==========  ======================================================  ================
``block1``  Conv2d(3, 32, 3, pad 1) - BatchNorm2d - ReLU - MaxPool2d(2)     32 x 64 x 64
``block2``  Conv2d(32, 64, 3, pad 1) - BatchNorm2d - ReLU - MaxPool2d(2)    64 x 32 x 32
``block3``  Conv2d(64, 128, 3, pad 1) - BatchNorm2d - ReLU - MaxPool2d(2)  128 x 16 x 16
``block4``  Conv2d(128, 256, 3, pad 1) - BatchNorm2d - ReLU (no pool)      256 x 16 x 16
head        GAP (spatial mean) or GMP (spatial max), Linear(256, C)      C
==========  ======================================================  ================

The last block keeps its resolution (no pool), so the CAM grid is ``S / 8``: 16 x 16 at 128.
The features the CAM is built from are ``block4``'s ReLU output ``F (B, 256, 16, 16)``;
``logits = fc(mean_xy(F))`` (GAP) or ``fc(amax_xy(F))`` (GMP), so the CAM identity of
docs/protocol.md holds exactly in eval mode.

Choices, and why:

* **BatchNorm** after each conv (the write-ups use plain conv + ReLU): without it the net
  learns the generated data much more slowly from scratch (measured, GAP, Adam 1e-3, batch
  32, constant lr: val top-1 after 4 epochs 41 % without BN, 53 % with BN, 71 % after 5),
  and the demo checkpoints must train in a few CPU minutes. In eval mode BN is a fixed per-channel affine map, so the features are still an
  ordinary function of the input.
* **Input 128 x 128**: the generated images are 96-160 px per side; 128 sits in that range,
  so resizing neither blows up nor destroys the objects, and gives a 16 x 16 CAM grid.
* **Normalisation** ``mean = std = (0.5, 0.5, 0.5)`` on RGB in [0, 1] (inputs in [-1, 1]):
  the net is trained from scratch on non-ImageNet images, so ImageNet statistics mean
  nothing here; 0.5/0.5 is the simplest symmetric choice (and what EfficientNet-Lite uses).
* **Classes** :data:`SIMPLECNN_CLASSES` = 6, the generated data's default
  ``SynthConfig().classes`` (``n90000001`` cart ... ``n90000006`` tree, sorted-WNID order).
* **Init**: PyTorch's default layer initialisation (conv and linear weights Kaiming-uniform
  with ``a = sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for the biases; BN weight
  1, bias 0). Behind BN a conv's weight scale does not change the function, only how far an
  Adam step moves it relative to the weights: the default init's smaller weights learn faster
  than Kaiming-normal fan-out (measured, GAP, first epoch of the recipe: train loss 1.66 vs
  1.71, train top-1 34.5 % vs 29.3 %).

Weights: the packaged checkpoints ``bench/resources/checkpoints/simplecnn_{gap,gmp}.pth``
(``state_dict()`` of :class:`SimpleCNN`, keys ``block1.0.weight`` ... ``fc.bias``), each with a
sidecar ``simplecnn_{gap,gmp}.pth.json`` recording how it was trained (``bench train``) and
its validation accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import Tensor, nn

from bench.models.sources import WeightsNotFound
from bench.models.surgery import PooledCamHead
from bench.resources import resource_path

__all__ = [
    "SIMPLECNN_CHANNELS",
    "SIMPLECNN_CLASSES",
    "SIMPLECNN_INPUT_SIZE",
    "SIMPLECNN_GRID",
    "SIMPLECNN_MEAN",
    "SIMPLECNN_STD",
    "SimpleCNN",
    "checkpoint_resource",
    "packaged_checkpoint_path",
    "packaged_not_found",
]

#: Output channels of the four conv blocks.
SIMPLECNN_CHANNELS: tuple[int, int, int, int] = (32, 64, 128, 256)
#: Number of classes: ``SynthConfig().classes`` of the generated data set.
SIMPLECNN_CLASSES = 6
#: Square input side (pixels).
SIMPLECNN_INPUT_SIZE = 128
#: CAM grid side at :data:`SIMPLECNN_INPUT_SIZE` (three 2x2 max-pools: 128 / 8).
SIMPLECNN_GRID = 16
SIMPLECNN_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SIMPLECNN_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

Pooling = Literal["gap", "gmp"]


def _block(c_in: int, c_out: int, *, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class SimpleCNN(PooledCamHead):
    """Four conv blocks + GAP/GMP + linear (see the module docstring for the layer table).

    Implements the network protocol of :class:`bench.models.registry.BenchModel`
    (``forward_cam``, ``cam_classifier``, ``weights_module``, ``ignored_weight_prefixes``).

    Args:
        pooling: ``'gap'`` (spatial mean) or ``'gmp'`` (spatial max).
        num_classes: outputs of the linear layer.
        channels: output channels of the four blocks.
    """

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        pooling: Pooling,
        num_classes: int = SIMPLECNN_CLASSES,
        channels: tuple[int, int, int, int] = SIMPLECNN_CHANNELS,
    ) -> None:
        super().__init__()
        if pooling not in ("gap", "gmp"):
            raise ValueError(f"pooling must be 'gap' or 'gmp', got {pooling!r}")
        self.pooling: Pooling = pooling
        c1, c2, c3, c4 = channels
        self.block1 = _block(3, c1, pool=True)
        self.block2 = _block(c1, c2, pool=True)
        self.block3 = _block(c2, c3, pool=True)
        self.block4 = _block(c3, c4, pool=False)
        self.fc = nn.Linear(c4, num_classes)  # every layer keeps PyTorch's default init

    def features(self, x: Tensor) -> Tensor:
        """``x`` ``(B, 3, S, S)`` -> ``F (B, 256, S/8, S/8)`` (block4's ReLU output)."""
        return self.block4(self.block3(self.block2(self.block1(x))))

    def cam_features(self, x: Tensor) -> Tensor:
        """The CAM feature map (mean = std = 0.5 input); the head is :class:`PooledCamHead`'s."""
        return self.features(x)


def checkpoint_resource(name: str) -> str:
    """Resource name (relative to ``bench/resources``) of a registry model's packaged checkpoint."""
    return f"checkpoints/{name}.pth"


def packaged_checkpoint_path(name: str) -> Path | None:
    """Path of the packaged checkpoint of ``name`` (e.g. ``'simplecnn_gap'``), or ``None`` if absent."""
    path = resource_path(checkpoint_resource(name))
    return path if path.is_file() else None


def packaged_not_found(name: str) -> WeightsNotFound:
    """The error for a missing packaged checkpoint: what was tried and how to get weights."""
    path = resource_path(checkpoint_resource(name))
    tried = [
        "explicit weights file: none given (weights=FILE / --weights FILE)",
        f"packaged checkpoint: {path} does not exist",
    ]
    msg = "\n".join(
        [
            f"no weights available for model '{name}'. Tried, in order:",
            *[f"  - {t}" for t in tried],
            "Provide weights in one of these ways:",
            "  - reinstall wsol-bench (the wheel ships the checkpoint);",
            f"  - train it: bench train --model {name} --data generated --out {name}.pth, "
            f"then pass --weights {name}.pth.",
        ]
    )
    return WeightsNotFound(msg, tried=tried)
