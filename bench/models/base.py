"""The harness's model base types: :class:`ModelSpec` (what a model is) and :class:`BenchModel`
(a network in the harness's uniform view).

Their own module so that the registry and the model families it builds (e.g. the Caffe models)
both import them without importing each other; :mod:`bench.models.registry` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["ModelSpec", "BenchModel"]


@dataclass(frozen=True)
class ModelSpec:
    """What the harness needs to know about a model without building it.

    Attributes:
        name: registry name.
        paper_name: row name in the CAM paper's tables (one of :data:`bench.models.registry.PAPER_NAMES`), or None.
        family: backbone family pairing GAP/GMP twins (see :mod:`bench.models.registry`).
        head: ``'gap'`` | ``'gmp'`` | ``'fc'`` (fc: CAM does not apply).
        input_size: square input side S in pixels.
        grid: CAM grid side h = w at ``input_size``; 0 for fc heads.
        mean: per-channel mean of RGB in [0, 1] subtracted before the model.
        std: per-channel std the centred input is divided by.
        weights_note: where the weights come from (for ``bench list``).
    """

    name: str
    paper_name: str | None
    family: str
    head: str
    input_size: int
    grid: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_note: str


class BenchModel(nn.Module):
    """A network in the harness's uniform view: logits + last feature map + classifier.

    Attributes:
        spec: the registry entry.
        net: the network (implements ``forward_cam``, ``cam_classifier``,
            ``weights_module`` and ``ignored_weight_prefixes``; see :mod:`bench.models.surgery`).
    """

    def __init__(self, spec: ModelSpec, net: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, 3, S, S)`` normalised -> ``(logits (B, C), features (B, K, h, w) | None)``.

        ``features`` is None for fc heads.
        """
        return self.net.forward_cam(x)

    def classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (C, K), b (C,))``: for GAP ``logits == F.mean((2, 3)) @ W.T + b``; GMP: amax.

        Raises:
            CamNotApplicable: fc head.
        """
        return self.net.cam_classifier()

    def weights_module(self) -> nn.Module:
        """The module whose ``state_dict()`` is the canonical weights-file layout."""
        return self.net.weights_module()

    @property
    def returns_features(self) -> bool:
        """Whether ``forward`` returns the map layer's features (GAP/GMP heads; user models with a layer)."""
        return self.spec.head in ("gap", "gmp")

    def manifest_info(self) -> dict[str, Any]:
        """Extra fields for the run manifest's ``model`` section (user models: reference, preprocessing...)."""
        return {}

    @property
    def num_classes(self) -> int:
        """Number of classes the network predicts (out_features of its last linear layer)."""
        linears = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not linears:  # pragma: no cover - every registry network ends in a linear classifier
            raise TypeError(f"{self.spec.name}: no linear classifier found")
        return int(linears[-1].out_features)
