"""The per-image record: its columns and the text form of its fields (one row per image).

Records are written as CSV; list-valued fields are space-separated text: classes ``"3 1 4"``,
scores with 6 decimals, IoUs with :data:`IOU_DIGITS` decimals, boxes ``"x1 y1 x2 y2;x1 y1 x2 y2"``
(xyxy, 0-based INCLUSIVE original pixels). The meaning of every column is in
``docs/protocol.md`` (records). :mod:`bench.core.scoring` makes records; :mod:`bench.run.results`
stores and reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "IOU_DIGITS",
    "RECORD_COLUMNS",
    "OPTIONAL_COLUMNS",
    "CROP_COLUMNS",
    "record_columns",
    "format_ints",
    "format_floats",
    "format_boxes",
    "parse_ints",
    "parse_floats",
    "parse_boxes",
    "typed_records",
    "records_frame",
    "records_to_arrays",
]

#: IoUs are written with 10 decimals: two distinct IoUs of boxes in images up to 10,000 px a side
#: differ by more than 1e-9, so the rounding can never move an IoU across a threshold.
IOU_DIGITS = 10

#: The record's columns, in file order.
RECORD_COLUMNS: tuple[str, ...] = (
    "image_id",
    "label",
    "status",
    "error",
    "blacklisted",
    "width",
    "height",
    "top5_classes",
    "top5_scores",
    "guess_classes",
    "guess_boxes",
    "guess_ious",
    "guess_hits",
    "gtk_box",
    "gtk_iou",
    "gtk_hit",
    "degenerate",
    "gt_area_frac",
)

#: Columns a records file written before they existed may lack (read as empty).
OPTIONAL_COLUMNS: tuple[str, ...] = ("gt_area_frac",)

#: Columns the records of a crop-pipeline run (``input.pipeline = "crop"``) add after the others:
#: ``crop_gt_boxes``, the GT boxes in crop pixels as the crop protocol computes them (floats with 6
#: decimals, ``"x0 y0 x1 y1;..."``; :func:`bench.core.crop.to_crop`).
CROP_COLUMNS: tuple[str, ...] = ("crop_gt_boxes",)


def record_columns(pipeline: str = "resize") -> tuple[str, ...]:
    """The columns of a run's records, in file order: :data:`RECORD_COLUMNS`, plus :data:`CROP_COLUMNS`
    for the crop pipeline (other runs' records are unchanged)."""
    return RECORD_COLUMNS + (CROP_COLUMNS if pipeline == "crop" else ())


def format_ints(values: Any) -> str:
    """Integers space separated (``"3 1 4"``)."""
    return " ".join(str(int(v)) for v in values)


def format_floats(values: Any, digits: int = 6) -> str:
    """Floats with ``digits`` fixed decimals, space separated."""
    return " ".join(f"{float(v):.{digits}f}" for v in values)


def format_boxes(boxes: np.ndarray) -> str:
    """``(n, 4)`` integer boxes as ``"x1 y1 x2 y2;x1 y1 x2 y2"``."""
    return ";".join(format_ints(b) for b in np.asarray(boxes).reshape(-1, 4))


def parse_ints(text: Any) -> np.ndarray:
    """``"3 1 4"`` -> int64 array (empty for ``""`` or a missing value)."""
    if not isinstance(text, str) or not text.strip():
        return np.zeros(0, dtype=np.int64)
    return np.array(text.split(), dtype=np.int64)


def parse_floats(text: Any) -> np.ndarray:
    """Space-separated floats -> float64 array (empty for ``""`` or a missing value)."""
    if not isinstance(text, str) or not text.strip():
        return np.zeros(0, dtype=np.float64)
    return np.array(text.split(), dtype=np.float64)


def parse_boxes(text: Any) -> np.ndarray:
    """``"x1 y1 x2 y2;..."`` -> int64 ``(n, 4)`` (``(0, 4)`` for ``""``)."""
    if not isinstance(text, str) or not text.strip():
        return np.zeros((0, 4), dtype=np.int64)
    return np.array([b.split() for b in text.split(";")], dtype=np.int64).reshape(-1, 4)


def typed_records(frame: pd.DataFrame) -> pd.DataFrame:
    """A records frame read as text (``''`` for empty) with its typed columns converted, as
    ``records.csv.gz`` is read: the integer columns as int64 (``''`` -> -1), ``gtk_iou`` as float64
    (``''`` -> NaN). Converts ``frame`` in place and returns it."""
    for col in ("label", "blacklisted", "width", "height", "gtk_hit", "degenerate"):
        frame[col] = frame[col].replace("", "-1").astype(np.int64)
    frame["gtk_iou"] = pd.to_numeric(frame["gtk_iou"].where(frame["gtk_iou"] != "", None)).astype(np.float64)
    return frame


def records_frame(records: Any) -> pd.DataFrame:
    """Records (dicts with the columns :data:`RECORD_COLUMNS`, as :mod:`bench.core.scoring` makes
    them) as the frame their ``records.csv.gz`` reads back to: every field as its CSV text, then
    :func:`typed_records`. A frame is returned as it is."""
    if isinstance(records, pd.DataFrame):
        return records
    frame = pd.DataFrame(list(records), columns=list(RECORD_COLUMNS))
    return typed_records(frame.astype(str))


def records_to_arrays(frame: pd.DataFrame, n_guesses: int = 5) -> dict[str, np.ndarray]:
    """Per-image records -> the arrays :func:`bench.core.metrics.summarize` takes.

    ``guess_classes`` / ``guess_hits`` are ``(N, G)`` with ``G`` the most guesses any record holds
    (at most ``n_guesses``; 0 for runs without guesses, e.g. GT-class maps only); an image with
    fewer guesses is padded with class -1 / no hit.
    """
    n = len(frame)
    classes = [parse_ints(c)[:n_guesses] for c in frame["guess_classes"]]
    hits = [parse_ints(h)[:n_guesses] for h in frame["guess_hits"]]
    g = max((len(c) for c in classes), default=0)
    guess_classes = np.full((n, g), -1, dtype=np.int64)
    guess_hits = np.zeros((n, g), dtype=bool)
    for i, (c, h) in enumerate(zip(classes, hits)):
        guess_classes[i, : len(c)] = c
        guess_hits[i, : len(h)] = h.astype(bool)
    return {
        "labels": frame["label"].to_numpy(np.int64),
        "ok": (frame["status"] == "ok").to_numpy(),
        "blacklisted": frame["blacklisted"].to_numpy() == 1,
        "guess_classes": guess_classes,
        "guess_hits": guess_hits,
        "gtk_iou": frame["gtk_iou"].to_numpy(np.float64),
        "gtk_hit": frame["gtk_hit"].to_numpy() == 1,
        "degenerate": frame["degenerate"].to_numpy() == 1,
        "gt_area_frac": pd.to_numeric(frame["gt_area_frac"].where(frame["gt_area_frac"] != "", None)).to_numpy(np.float64),
    }
