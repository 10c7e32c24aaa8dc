"""Models: registry of CAM-ready networks and their weights sources (docs/protocol.md).

``build_model(name, weights=None, *, pretrained=True) -> (BenchModel, WeightsInfo)`` is the
entry point; ``list_models()`` / ``MODELS`` describe what exists without building anything.
"""

from bench.models.registry import (
    MODELS,
    PAPER_NAMES,
    BenchModel,
    ModelSpec,
    UnknownModelError,
    build_backbone_init,
    build_model,
    get_spec,
    list_models,
    offline_weights,
)
from bench.models.sources import (
    UnsafeWeightsFile,
    WeightsError,
    WeightsInfo,
    WeightsMismatch,
    WeightsNotFound,
)
from bench.models.surgery import CamNotApplicable

__all__ = [
    "MODELS",
    "PAPER_NAMES",
    "BenchModel",
    "ModelSpec",
    "UnknownModelError",
    "CamNotApplicable",
    "build_backbone_init",
    "build_model",
    "get_spec",
    "list_models",
    "offline_weights",
    "WeightsInfo",
    "WeightsError",
    "WeightsNotFound",
    "WeightsMismatch",
    "UnsafeWeightsFile",
]
