"""``--model center``: the model-free centre baseline (wsolevaluation's "Center baseline" row).

:class:`CenterModel` has no weights and classifies nothing: its maps are
:func:`bench.core.center.center_map` (an isotropic Gaussian centred on the input frame, ``sigma`` a
fraction of the shorter side), the same for every image and class. Its head is ``'center'``: the
engine then computes only the GT class's map and scores GT-known localization, the IoU statistics
and the threshold sweeps; the top-k columns (classification and localization) are
"n/a (GT-class maps only)", as for `bench score` of ``.npy`` maps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bench.core.center import DEFAULT_SIGMA, center_maps
from bench.models.registry import BenchModel, ModelSpec
from bench.models.sources import WeightsInfo

__all__ = ["CENTER", "CenterMapSource", "CenterModel", "center_model"]

#: The name `bench run --model` takes.
CENTER = "center"


class _NoNet(nn.Module):
    """Placeholder network: one empty parameter so that ``.to(device)`` and the libraries' device look-ups work."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)


class CenterModel(BenchModel):
    """The centre baseline as a model: ``forward`` gives no classes; :func:`bench.core.maps.produce_maps`
    draws the Gaussian for the GT class."""

    def __init__(self, sigma: float = DEFAULT_SIGMA, input_size: int = 224) -> None:
        spec = ModelSpec(
            name=CENTER, paper_name=None, family=CENTER, head="center", input_size=input_size, grid=0,
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), weights_note="model-free: an isotropic Gaussian centred on the image",
        )  # fmt: skip
        super().__init__(spec, _NoNet())
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> tuple[Tensor, None]:
        """No classification: ``(logits (B, 0), None)``."""
        return x.new_zeros((x.shape[0], 0)), None

    @property
    def num_classes(self) -> int:
        return 0

    def weights_module(self) -> nn.Module:
        return self.net

    def manifest_info(self) -> dict[str, Any]:
        return {"center_sigma": self.sigma, "center_sigma_of": "shorter side of the input frame"}


def center_model() -> tuple[CenterModel, WeightsInfo]:
    """``(CenterModel(), WeightsInfo('none', None, None))``."""
    return CenterModel(), WeightsInfo("none", None, None)


class CenterMapSource:
    """The centre baseline of the pointing suites (``bench run --suite pointing_* --model center``).

    ``maps``: the same Gaussian as :class:`CenterModel` for every class present (the energy pointing
    game and the Quantus scores read it). ``points``: the pointing game's point is TorchRay's centre
    baseline, ``(W / 2, H / 2)`` in original pixels (not the Gaussian's argmax, which for an even side
    is the first of the central pixels, half a pixel away), so the row is comparable with TorchRay's
    published centre baseline.
    """

    name = CENTER
    input_size = 224
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, sigma: float = DEFAULT_SIGMA) -> None:
        self.sigma = float(sigma)

    def maps(self, x: Tensor, classes: Tensor) -> Tensor:
        """``(B, k, S, S)`` Gaussians on the input frame (``S`` = ``input_size``)."""
        return center_maps(x.shape[0], classes.shape[1], (self.input_size, self.input_size), self.sigma, device=x.device)

    def points(self, sizes: list[tuple[int, int]]) -> Tensor:
        """``(B, 2)`` points ``(x, y) = (W / 2, H / 2)`` of images of ``sizes`` ``[(H, W), ...]``."""
        return torch.tensor([[w / 2, h / 2] for h, w in sizes], dtype=torch.float64)
