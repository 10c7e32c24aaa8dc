"""Post-hoc metrics of a finished run, written beside it: COCO box AP (and, re-exported from
:mod:`bench.run.sweeps`, the threshold sweeps of ``bench sweep``).

``bench export --coco RUN`` writes the run's guesses and GT as COCO JSON (``coco.json``) and box AP
from pycocotools' COCOeval (``coco_eval.json``); ``bench table`` shows ``box_ap`` when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.run.results import RunDir, atomic_write_json
from bench.run.sweeps import (
    RunMetricsError, SweepItem, SweepSettings, WsolItem, load_run_data, sweep_counts, sweep_run, wsol_sweep_counts,
    wsol_sweep_run,
)  # fmt: skip

__all__ = [
    "RunMetricsError", "SweepItem", "SweepSettings", "WsolItem", "sweep_counts", "sweep_run", "wsol_sweep_counts",
    "wsol_sweep_run", "coco_export", "load_run_data",
]  # fmt: skip


def coco_export(run: RunDir, data_root: Path | str | None = None) -> dict[str, Any]:
    """Write coco.json (GT + detections) and coco_eval.json (AP, AP50, AP75) into the run folder."""
    from bench.analysis.coco import coco_eval, coco_json

    valset = load_run_data(run, data_root)
    records = run.read_records()
    if not (records["guess_boxes"] != "").any():
        raise RunMetricsError(f"{run.path}: the run has no boxes (fully connected head with CAM); nothing to export")
    gt = {g.image_id: (g.label, np.asarray(g.boxes)) for g in valset.images}
    n_classes = len(valset.class_ids)
    atomic_write_json(run.path / "coco.json", coco_json(records, gt, n_classes))
    result = coco_eval(records, gt, n_classes)
    atomic_write_json(run.path / "coco_eval.json", result)
    return result


def read_box_ap(run_path: Path) -> float | None:
    path = Path(run_path) / "coco_eval.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["AP"])
