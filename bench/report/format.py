"""One number formatter and one set of column headers for every human-readable output.

The console (Markdown tables), the LaTeX export and the HTML report all show a value through
:func:`format_value`, so the same number reads the same everywhere; CSV keeps the raw values and
the raw identifiers (it is the machine-readable source).

Rules (units: errors and IoU shares in percent, ``mean_iou`` and ``box_ap`` on a 0-1 scale):

- missing (None, NaN): an en dash ``–``;
- integers (counts): as integers, ``300``;
- percent metrics: 2 decimals, ``35.33``;
- 0-1 metrics (``mean_iou``, ``box_ap``): 4 decimals, ``0.5970``;
- p-values: 4 decimals, and below 1e-4 the bound ``<0.0001`` (LaTeX: ``$<$0.0001``, since a bare
  ``<`` prints as "¡" in pdflatex's default OT1 encoding); 1 stays ``1.0000``;
- text: as is (escaped by the renderer).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MISSING",
    "UNIT_SCALE",
    "P_VALUE_COLUMNS",
    "HEADERS",
    "METRIC_NAMES",
    "digits_for",
    "format_value",
    "header",
    "metric_name",
]

MISSING = "–"
#: Metrics on a 0-1 scale (4 decimals); every other metric is a percentage (2 decimals).
UNIT_SCALE = frozenset({"mean_iou", "box_ap"})
#: Columns that hold p-values.
P_VALUE_COLUMNS = frozenset({"p_mcnemar", "p_value"})
P_FLOOR = 1e-4

#: Human names of the summary metrics (rows of a comparison, columns of a summary).
METRIC_NAMES: dict[str, str] = {
    "top1_cls_err": "Top-1 cls. err.",
    "top5_cls_err": "Top-5 cls. err.",
    "top1_loc_err": "Top-1 loc. err.",
    "top5_loc_err": "Top-5 loc. err.",
    "gt_known_loc_err": "GT-known loc. err.",
    "mean_iou": "Mean IoU",
    "iou_ge_0.3": "IoU ≥ 0.3 (%)",
    "iou_ge_0.5": "IoU ≥ 0.5 (%)",
    "iou_ge_0.7": "IoU ≥ 0.7 (%)",
}

#: Human column headers of the rendered tables (raw identifier -> header).
HEADERS: dict[str, str] = {
    **METRIC_NAMES,
    "label": "Method",
    "method": "Method",
    "model": "Model",
    "suite": "Suite",
    "family": "Backbone",
    "images": "Images",
    "scored": "Scored",
    "failed": "Failed",
    "degenerate_cams": "Degenerate CAMs",
    "box_ap": "Box AP",
    "top5_loc_err_tight_loose": "Top-5 loc. err., tight/loose",
    "metric": "Metric",
    "delta": "B − A",
    "ci_lo": "95% CI low",
    "ci_hi": "95% CI high",
    "ci": "95% CI of B − A",
    "p_mcnemar": "McNemar p",
    "source": "Source",
    "ilsvrc_maxboxacc_v2": "ILSVRC MaxBoxAccV2",
    "ilsvrc_top1_loc": "ILSVRC Top-1 Loc (crop)",
    "ilsvrc_gt_known_loc": "ILSVRC GT-known Loc (crop)",
    "cub_maxboxacc_v2": "CUB MaxBoxAccV2",
    "cub_top1_loc": "CUB Top-1 Loc (crop)",
    "cub_gt_known_loc": "CUB GT-known Loc (crop)",
    "openimages_pxap": "OpenImages PxAP",
    "threshold_chosen_on": "τ chosen on",
    "maxboxacc": "MaxBoxAcc",
    "best_tau": "best τ",
    "maxboxacc_v2": "MaxBoxAccV2",
    "maxboxacc_v2_30": "V2 δ=30",
    "maxboxacc_v2_50": "V2 δ=50",
    "maxboxacc_v2_70": "V2 δ=70",
    "best_tau_v2": "best τ (V2)",
    "pxap": "PxAP",
}


def header(column: str) -> str:
    """The human header of a raw column name (the name itself when there is none)."""
    return HEADERS.get(column, column)


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


#: Columns holding thresholds on a 0-1 scale (curves): 3 decimals.
THRESHOLDS = frozenset({"threshold", "best_threshold", "best_tau"})


def digits_for(metric: str | None) -> int:
    """Decimals for a metric: 4 on the 0-1 scale, 3 for thresholds, else 2 (percent)."""
    if metric in UNIT_SCALE or (metric or "").endswith("_iou"):
        return 4
    return 3 if metric in THRESHOLDS else 2


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(value: Any, metric: str | None = None, *, column: str | None = None, latex: bool = False) -> str:
    """Text of one value. ``metric`` decides the decimals (see module docstring); ``column`` marks
    p-value columns; ``latex`` writes the p-value floor in math mode. Non-numbers come back as str."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if column in P_VALUE_COLUMNS:
            if 0 <= value < P_FLOOR:
                return "$<$0.0001" if latex else "<0.0001"
            return f"{value:.4f}"
        if value.is_integer() and metric is None and column in ("images", "scored", "failed", "degenerate_cams"):
            return str(int(value))
        return f"{value:.{digits_for(metric)}f}"
    return str(value)
