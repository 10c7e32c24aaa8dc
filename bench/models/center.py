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

from bench.core.center import DEFAULT_SIGMA
from bench.models.registry import BenchModel, ModelSpec
from bench.models.sources import WeightsInfo

__all__ = ["CENTER", "CenterModel", "center_model"]

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
