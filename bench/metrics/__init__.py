"""Metric objects (torchmetrics style): ``update(...)`` batches of maps in memory, ``compute() -> dict``.

States are counts and sums reduced across processes with ``dist_reduce_fx="sum"`` (the per-image
rows of :class:`LocalizationError` are concatenated), so the same object works in a single process,
in a plain DDP loop and in Lightning. Each computes through the harness's own rules, so its numbers
are those of the run folder (``summary.json``, ``sweep.json``) on the same maps:

* :class:`MaxBoxAcc`, :class:`MaxBoxAccV2` (``update(maps, boxes, sizes)``): wsolevaluation's box
  sweeps, ``rules="wsol"`` (its code) or ``"harness"`` (``bench sweep``);
* :class:`PxAP` (``update(maps, masks, ignore=None)``): wsolevaluation's pixel average precision;
* :class:`LocalizationError` (``update(maps, labels, boxes, sizes, classes=None, scores=None)``
  or ``update_records(records)``): a top-k suite's devkit metrics and per-image records;
* :class:`PointingGame` (``update(maps, regions, classes)``), :class:`EnergyPointingGame` and the
  Quantus localisation scores :class:`RelevanceMassAccuracy`, :class:`RelevanceRankAccuracy`,
  :class:`TopKIntersection`, :class:`AttributionLocalisation`, :class:`LocalisationAUC`
  (``update(maps, regions)``): the saliency community's scores;
* :func:`for_suite`: the objects a suite computes. Functional twins: :func:`box_accuracy`,
  :func:`pixel_average_precision`, :func:`localization_error`.
"""

from bench.metrics.boxacc import SWEEP_KEYS, BoxAccuracy, MaxBoxAcc, MaxBoxAccV2, box_accuracy
from bench.metrics.inputs import MetricInputError
from bench.metrics.localization import LocalizationError, localization_error
from bench.metrics.pointing import PointingGame
from bench.metrics.pxap import PxAP, pixel_average_precision
from bench.metrics.saliency import (
    AttributionLocalisation, EnergyPointingGame, LocalisationAUC, MeanMapScore, RelevanceMassAccuracy, RelevanceRankAccuracy,
    TopKIntersection,
)  # fmt: skip
from bench.metrics.suites import for_suite

__all__ = [
    "BoxAccuracy", "MaxBoxAcc", "MaxBoxAccV2", "PxAP", "LocalizationError", "MetricInputError", "SWEEP_KEYS",
    "PointingGame", "EnergyPointingGame", "RelevanceMassAccuracy", "RelevanceRankAccuracy", "TopKIntersection",
    "AttributionLocalisation", "LocalisationAUC", "MeanMapScore",
    "for_suite", "box_accuracy", "pixel_average_precision", "localization_error",
]  # fmt: skip
