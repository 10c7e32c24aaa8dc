"""The metric objects a suite computes (:func:`for_suite`)."""

from __future__ import annotations

from torchmetrics import Metric

from bench.core.protocol import Protocol, load_protocol
from bench.metrics.boxacc import MaxBoxAccV2
from bench.metrics.localization import LocalizationError
from bench.metrics.pxap import PxAP

__all__ = ["for_suite"]


def for_suite(suite: str | Protocol, *, class_ids: object = None) -> dict[str, Metric]:
    """Fresh metric objects for what ``suite`` (a name, a ``.toml`` path or a Protocol) reports.

    * ``"localization"``: :class:`LocalizationError` (records and ``summary.json``), every suite;
    * wsol_* suites (``[wsol] evaluation``): ``"boxacc"``, a :class:`MaxBoxAccV2` with
      wsolevaluation's rules at the suite's step (``sweep.json``: MaxBoxAcc and MaxBoxAccV2), and,
      for ``evaluation = "masks"``, ``"pxap"``, a :class:`PxAP` at that step.

    >>> sorted(for_suite("wsol_cub"))
    ['boxacc', 'localization']
    >>> sorted(for_suite("wsol_openimages"))
    ['boxacc', 'localization', 'pxap']
    """
    protocol = suite if isinstance(suite, Protocol) else load_protocol(suite)
    metrics: dict[str, Metric] = {"localization": LocalizationError(protocol, class_ids=class_ids)}
    if protocol.wsol_evaluation:
        metrics["boxacc"] = MaxBoxAccV2(step=protocol.wsol_step, rules="wsol")
        if protocol.wsol_evaluation == "masks":
            metrics["pxap"] = PxAP(step=protocol.wsol_step)
    return metrics
