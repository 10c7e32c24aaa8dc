"""`bench table --pointing`: the pointing game in TorchRay's table shape.

Rows are methods (a run's label: ``--label``, else the model name with ``-<method>`` for gradient
maps); columns the pointing accuracy (%, mean of per-class accuracies) on VOC07 test all /
difficult and COCO val2014 all / difficult, from the runs of the suites ``pointing_voc07``,
``pointing_voc07_difficult``, ``pointing_coco14``, ``pointing_coco14_difficult``. With
``with_torchray`` TorchRay's published rows follow (``bench/resources/torchray_pointing.csv``,
typed from its ``docs/pointing.csv``), labelled ``<method>, <backbone> (TorchRay)``.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from bench.run.results import find_runs

__all__ = ["POINTING_SUITES", "pointing_caption", "pointing_table", "torchray_rows"]

#: suite -> column
POINTING_SUITES: dict[str, str] = {
    "pointing_voc07": "voc07_all",
    "pointing_voc07_difficult": "voc07_difficult",
    "pointing_coco14": "coco14_all",
    "pointing_coco14_difficult": "coco14_difficult",
}
COLUMNS = ["label", *POINTING_SUITES.values(), "source"]


def torchray_rows() -> pd.DataFrame:
    """TorchRay's published pointing accuracies (%), one row per (method, backbone)."""
    text = resources.files("bench.resources").joinpath("torchray_pointing.csv").read_text()
    frame = pd.read_csv(io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#"))))
    frame["label"] = frame["method"] + ", " + frame["backbone"] + " (TorchRay)"
    frame["source"] = "TorchRay"
    return frame[COLUMNS]


def _label(manifest: dict[str, Any]) -> str:
    if manifest.get("label"):
        return str(manifest["label"])
    method = manifest["protocol"]["cam"].get("method", "cam")
    name = manifest["model"]["name"]
    return name if method == "cam" else f"{name}-{method}"


def pointing_table(roots: list[Path], with_torchray: bool = False) -> pd.DataFrame:
    """One row per run label, one column per pointing suite (accuracy in %, 1 decimal as TorchRay)."""
    rows: dict[str, dict[str, Any]] = {}
    for run in find_runs(roots):
        manifest = run.read_manifest()
        suite = manifest["protocol"]["protocol"]["name"]
        if suite not in POINTING_SUITES or "pointing" not in manifest["protocol"]:
            continue
        summary = run.read_summary()
        label = _label(manifest)
        row = rows.setdefault(label, {"label": label, "source": "run"})
        value = summary.get("pointing_accuracy")
        row[POINTING_SUITES[suite]] = None if value is None else round(100 * float(value), 1)
    frame = pd.DataFrame(list(rows.values()), columns=COLUMNS).sort_values("label", kind="stable").reset_index(drop=True)
    if with_torchray:
        frame = pd.concat([frame, torchray_rows()], ignore_index=True)
    return frame


def pointing_caption() -> str:
    return (
        "Pointing game accuracy (%), mean of per-class accuracies (Zhang et al. 2016; TorchRay's rule: 15 px tolerance, "
        "VOC07 test and COCO val2014, all pairs and the EBP difficult subset)."
    )
