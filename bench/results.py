"""Run directories: manifest, per-image records in shards, summary. All writes are atomic.

Layout of one run (``<out>/<suite>/<run-id>/``)::

    manifest.json              what was run: resolved protocol + hash, model, weights sha256, data
                               fingerprint, versions, device, batch size, times, command line
    records/shard-00000.csv.gz per-image records of images [0, S), S = manifest.shard_size, ...
    records.csv.gz             all shards merged, sorted by image id (written when the run completes)
    summary.json               every metric of DESIGN §5 plus image counts

Per-image record columns (one row per image of the data set, failed images included):

    image_id      file stem, e.g. ILSVRC2012_val_00000001
    label         GT class index (sorted-WNID order)
    status        "ok" or "failed"
    error         why a failed image failed ("" when ok)
    blacklisted   1 if the image is on the protocol's blacklist (left out of localization denominators)
    width,height  original image size in pixels
    top5_classes  5 class indices by decreasing score, space separated
    top5_scores   their softmax probabilities, 6 decimals
    guess_classes the 5 scored guesses' classes (tight_loose: c1 c1 c2 c2 c3)
    guess_boxes   the 5 guesses' boxes "x1 y1 x2 y2;..." (xyxy, 0-based INCLUSIVE original pixels);
                  "" for models that do not localize
    guess_ious    each guess box's best IoU over the GT boxes (10 decimals: two distinct IoUs of
                  boxes in images up to 10,000 px a side differ by > 1e-9, so the rounding can
                  never move an IoU across a threshold), whatever its class
    guess_hits    1 if the guess localizes (right class and IoU >= protocol iou_threshold)
    gtk_box       the GT-class CAM's box (GT-known localization), "" if not localized
    gtk_iou       its best IoU over the GT boxes
    gtk_hit       1 if gtk_iou >= iou_threshold
    degenerate    1 if a CAM used for this image had max <= 0 (its box is the whole image)

IoUs are written with 10 decimals, scores with 6. Floats are written with fixed precision and files are gzip'ed with mtime 0, so the same run gives
byte-identical files.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

IOU_DIGITS = 10

__all__ = [
    "IOU_DIGITS",
    "RECORD_COLUMNS",
    "RunDir",
    "atomic_write_bytes",
    "atomic_write_json",
    "format_ints",
    "format_floats",
    "format_boxes",
    "parse_ints",
    "parse_floats",
    "parse_boxes",
    "records_to_arrays",
    "find_runs",
]

RECORD_COLUMNS = [
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
]


# ---- atomic writes -----------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())
    return buf.getvalue()


# ---- field formatting --------------------------------------------------------------------------
def format_ints(values: Iterable[int]) -> str:
    return " ".join(str(int(v)) for v in values)


def format_floats(values: Iterable[float], digits: int = 6) -> str:
    return " ".join(f"{float(v):.{digits}f}" for v in values)


def format_boxes(boxes: np.ndarray) -> str:
    """(n,4) int boxes -> 'x1 y1 x2 y2;x1 y1 x2 y2'."""
    return ";".join(format_ints(b) for b in np.asarray(boxes).reshape(-1, 4))


def parse_ints(text: Any) -> np.ndarray:
    if not isinstance(text, str) or not text.strip():
        return np.zeros(0, dtype=np.int64)
    return np.array(text.split(), dtype=np.int64)


def parse_floats(text: Any) -> np.ndarray:
    if not isinstance(text, str) or not text.strip():
        return np.zeros(0, dtype=np.float64)
    return np.array(text.split(), dtype=np.float64)


def parse_boxes(text: Any) -> np.ndarray:
    if not isinstance(text, str) or not text.strip():
        return np.zeros((0, 4), dtype=np.int64)
    return np.array([b.split() for b in text.split(";")], dtype=np.int64).reshape(-1, 4)


def records_to_csv_gz(records: Sequence[dict[str, Any]]) -> bytes:
    frame = pd.DataFrame(list(records), columns=RECORD_COLUMNS)
    return _gzip_bytes(frame.to_csv(index=False, lineterminator="\n"))


def read_records(path: Path) -> pd.DataFrame:
    """Read a records CSV(.gz) with every text column kept as text ('' for empty)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a records file, missing columns {missing}")
    for col in ("label", "blacklisted", "width", "height", "gtk_hit", "degenerate"):
        frame[col] = frame[col].replace("", "-1").astype(np.int64)
    frame["gtk_iou"] = pd.to_numeric(frame["gtk_iou"].where(frame["gtk_iou"] != "", None)).astype(np.float64)
    return frame


def records_to_arrays(frame: pd.DataFrame, n_guesses: int = 5) -> dict[str, np.ndarray]:
    """Per-image records -> the arrays :func:`bench.metrics.summarize` takes (missing guesses = -1 / False)."""
    n = len(frame)
    guess_classes = np.full((n, n_guesses), -1, dtype=np.int64)
    guess_hits = np.zeros((n, n_guesses), dtype=bool)
    for i, (classes, hits) in enumerate(zip(frame["guess_classes"], frame["guess_hits"])):
        c = parse_ints(classes)[:n_guesses]
        h = parse_ints(hits)[:n_guesses]
        guess_classes[i, : len(c)] = c
        guess_hits[i, : len(h)] = h.astype(bool)
    return {
        "labels": frame["label"].to_numpy(np.int64),
        "ok": (frame["status"] == "ok").to_numpy(),
        "blacklisted": frame["blacklisted"].to_numpy() == 1,
        "guess_classes": guess_classes,
        "guess_hits": guess_hits,
        "gtk_iou": frame["gtk_iou"].to_numpy(np.float64),
        "degenerate": frame["degenerate"].to_numpy() == 1,
    }


# ---- the run directory -------------------------------------------------------------------------
class RunDir:
    """One run's folder. Shard ``k`` holds the records of images ``[k*S, (k+1)*S)`` in data-set order."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def records_path(self) -> Path:
        return self.path / "records.csv.gz"

    @property
    def shard_dir(self) -> Path:
        return self.path / "records"

    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:05d}.csv.gz"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def is_complete(self) -> bool:
        return self.summary_path.is_file() and self.records_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.manifest_path}: cannot read the run manifest ({exc})") from exc

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.summary_path}: cannot read the run summary ({exc})") from exc

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    def done_shards(self) -> set[int]:
        if not self.shard_dir.is_dir():
            return set()
        return {int(p.name[6:11]) for p in self.shard_dir.glob("shard-?????.csv.gz")}

    def write_shard(self, index: int, records: Sequence[dict[str, Any]]) -> None:
        atomic_write_bytes(self.shard_path(index), records_to_csv_gz(records))

    def merge_shards(self, n_shards: int) -> pd.DataFrame:
        """Concatenate shards 0..n-1 (all must exist) into ``records.csv.gz``; returns the frame."""
        missing = [k for k in range(n_shards) if not self.shard_path(k).is_file()]
        if missing:
            raise RuntimeError(f"{self.shard_dir}: shards {missing[:10]} missing; rerun the same command to finish")
        # Shards are concatenated as text (header once), so records.csv.gz is byte-identical to a
        # single-shard write of the same rows.
        lines: list[str] = []
        for k in range(n_shards):
            with gzip.open(self.shard_path(k), "rt", newline="") as fh:
                text = fh.read().split("\n")
            lines.extend(text[:1] if not lines else [])
            lines.extend(line for line in text[1:] if line)
        atomic_write_bytes(self.records_path, _gzip_bytes("\n".join(lines) + "\n"))
        return read_records(self.records_path)

    def read_records(self) -> pd.DataFrame:
        if not self.records_path.is_file():
            raise FileNotFoundError(f"{self.records_path}: the run has no merged records (is it finished?)")
        return read_records(self.records_path)


def find_runs(roots: Sequence[Path | str]) -> list[RunDir]:
    """Every finished run (a folder with manifest.json and summary.json) under the given folders."""
    runs: list[RunDir] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        candidates = [root] if (root / "manifest.json").is_file() else sorted(p.parent for p in root.rglob("manifest.json"))
        for c in candidates:
            run = RunDir(c)
            if run.summary_path.is_file() and c.resolve() not in seen:
                seen.add(c.resolve())
                runs.append(run)
    return runs
