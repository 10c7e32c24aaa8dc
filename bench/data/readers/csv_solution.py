"""Kaggle ILSVRC layout: ``root/LOC_val_solution.csv`` and ``root/LOC_synset_mapping.txt``.

``ImageId,PredictionString``, the string being repeated ``CLASS_ID xmin ymin xmax ymax``; rows in
any order. Class list: ``classes=``, else ``root/LOC_synset_mapping.txt``, else ImageNet's 1000
WNIDs (sorted).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.dataset import (
    CLASS_FIX,
    CSV_SYNSETS,
    ClassesArg,
    GroundTruth,
    Problem,
    Records,
    any_bad_box,
    check_boxes,
    split_boxes,
    resolve_classes,
    strip_image_ext,
)

__all__ = ["CSV_SOLUTION", "find", "read"]

CSV_SOLUTION = "LOC_val_solution.csv"


def find(root: Path) -> Path | None:
    """The solution file under ``root``, or None."""
    path = root / CSV_SOLUTION
    return path if path.is_file() else None


def read(root: Path, classes: ClassesArg, problems: list[Problem], ann_ids: set[str]) -> GroundTruth:
    """Parse ``root/LOC_val_solution.csv`` (problems appended, ``ann_ids`` filled)."""
    cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
    sol = root / CSV_SOLUTION
    if not sol.is_file():
        problems.append(Problem("missing-file", str(sol), "not found", f"put {CSV_SOLUTION} in the root folder"))
        return GroundTruth("csv", cls, {}, sol, class_source=source, class_file=file)
    return GroundTruth("csv", cls, _read_csv(sol, cls, problems, ann_ids), sol, class_source=source, class_file=file)


def _read_csv(path: Path, wnids: tuple[str, ...], problems: list[Problem], ann_ids: set[str]) -> Records:
    """Parse ``LOC_val_solution.csv`` (vectorised); returns {image_id: (label, boxes)}."""
    lineno: np.ndarray | None = None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except pd.errors.ParserError:
        # Some row has more than 2 comma-separated fields; pandas stops at the first one. Re-read
        # line by line to report every such row, and go on with the others.
        df, lineno, bad_ids = _read_csv_rows(path, problems)
        ann_ids.update(bad_ids)  # their images are annotated (badly), not unannotated
        if df is None:
            return {}
    except (OSError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(
            Problem(
                "malformed-csv",
                str(path),
                f"cannot parse as CSV ({exc})",
                "the file must have the header 'ImageId,PredictionString' and 2 fields per row",
            )
        )
        return {}
    cols = [c.strip() for c in df.columns]
    if cols != ["ImageId", "PredictionString"]:
        problems.append(
            Problem(
                "malformed-csv",
                str(path),
                f"header is {cols}, expected ['ImageId', 'PredictionString']",
                "use the Kaggle LOC_val_solution.csv format",
            )
        )
        return {}
    ids = df["ImageId"].str.strip().map(strip_image_ext).to_numpy(dtype=object)
    strings = df["PredictionString"].to_numpy(dtype=object)
    if lineno is None:
        lineno = np.arange(len(df)) + 2  # header is line 1
    ann_ids.update(i for i in ids if i)

    empty = np.flatnonzero(ids == "")
    for i in empty:
        problems.append(
            Problem("bad-row", f"{path}:{lineno[i]}", "empty ImageId", "give the image file stem")
        )
    dup_mask = pd.Series(ids).duplicated(keep=False).to_numpy() & (ids != "")
    if dup_mask.any():
        groups: dict[str, list[int]] = defaultdict(list)
        for i in np.flatnonzero(dup_mask):
            groups[ids[i]].append(int(lineno[i]))
        for image_id, lines in groups.items():
            problems.append(
                Problem(
                    "duplicate-id",
                    f"{path}:{','.join(map(str, lines))}",
                    f"image id {image_id} appears on {len(lines)} rows",
                    "merge its boxes into one row",
                )
            )

    tokens_per_row = pd.Series(strings).str.split().str.len().to_numpy(dtype=np.int64)
    badcount = (tokens_per_row == 0) | (tokens_per_row % 5 != 0)
    for i in np.flatnonzero(badcount):
        problems.append(
            Problem(
                "bad-row",
                f"{path}:{lineno[i]} ({ids[i]})",
                f"PredictionString has {tokens_per_row[i]} fields, expected a non-zero multiple of 5",
                "write one group 'WNID xmin ymin xmax ymax' per box, separated by spaces",
            )
        )
    good = np.flatnonzero(~badcount & ~dup_mask & (ids != ""))
    if len(good) == 0:
        return {}
    tok = np.array(" ".join(strings[good]).split(), dtype=object).reshape(-1, 5)
    counts = tokens_per_row[good] // 5
    row_of_box = np.repeat(np.arange(len(good)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # coordinates: integers as written (integral floats like '12.0' tolerated)
    vals = (
        pd.to_numeric(pd.Series(tok[:, 1:].ravel()), errors="coerce")
        .to_numpy(dtype=np.float64)
        .reshape(-1, 4)
    )
    nonint = ~np.isfinite(vals) | (vals != np.round(vals))
    bad_rows_coord = np.zeros(len(good), dtype=bool)
    for b in np.flatnonzero(nonint.any(axis=1)):
        r = row_of_box[b]
        bad_rows_coord[r] = True
        problems.append(
            Problem(
                "bad-box",
                f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                f"box {list(tok[b, 1:])} has a non-integer coordinate",
                "write integer pixel coordinates",
            )
        )
    boxes = np.where(nonint, 0, vals).astype(np.int64)

    # classes: index in the sorted class list; -1 = unknown
    wn = tok[:, 0]
    codes = pd.Index(list(wnids)).get_indexer(wn).astype(np.int64)
    bad_rows_wnid = np.zeros(len(good), dtype=bool)
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        seen_pairs = set()
        for b in unknown:
            r = row_of_box[b]
            bad_rows_wnid[r] = True
            if (r, wn[b]) in seen_pairs:
                continue
            seen_pairs.add((r, wn[b]))
            problems.append(
                Problem(
                    "unknown-wnid",
                    f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                    f"unknown class id {wn[b]!r}",
                    CLASS_FIX,
                )
            )
    fact = pd.factorize(pd.Series(wn))[0].astype(np.int64)
    mixed = np.minimum.reduceat(fact, starts) != np.maximum.reduceat(fact, starts)
    for r in np.flatnonzero(mixed):
        names = sorted(set(wn[starts[r] : starts[r] + counts[r]]))
        problems.append(
            Problem(
                "mixed-classes",
                f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                f"boxes of several classes {names}",
                "every box of an image must have the image's class",
            )
        )
    bad_box_rows = bad_rows_coord | bad_rows_wnid | mixed
    where = [f"{path}:{lineno[good[r]]} ({ids[good[r]]})" for r in row_of_box] if any_bad_box(boxes) else []
    check_boxes(boxes, where, problems)

    keep = ~bad_box_rows
    labels = codes[starts]
    chunks = split_boxes(boxes, counts)
    return {ids[good[r]]: (int(labels[r]), chunks[r]) for r in np.flatnonzero(keep)}


def _read_csv_rows(path: Path, problems: list[Problem]) -> tuple[pd.DataFrame | None, np.ndarray, set[str]]:
    """Slow path of the CSV reader: every row with more than 2 fields is a problem (with its
    line). Returns the other rows (short rows padded with '', as pandas does), their line
    numbers, and the image ids of the bad rows."""
    bad_ids: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("malformed-csv", str(path), f"cannot read ({exc})", "fix the file"))
        return None, np.zeros(0, dtype=np.int64), bad_ids
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for rec in reader:
        if not any(field.strip() for field in rec):
            continue
        if header is None:
            header = [c.strip() for c in rec]
            if header != ["ImageId", "PredictionString"]:
                problems.append(
                    Problem(
                        "malformed-csv",
                        f"{path}:{reader.line_num}",
                        f"header is {header}, expected ['ImageId', 'PredictionString']",
                        "use the Kaggle LOC_val_solution.csv format",
                    )
                )
                return None, np.zeros(0, dtype=np.int64), bad_ids
            continue
        if len(rec) > 2:
            problems.append(
                Problem(
                    "bad-row",
                    f"{path}:{reader.line_num}",
                    f"row has {len(rec)} comma-separated fields, expected 2 (ImageId,PredictionString)",
                    "remove the extra commas: boxes are separated by spaces inside PredictionString",
                )
            )
            if rec[0].strip():
                bad_ids.add(strip_image_ext(rec[0].strip()))
            continue
        rows.append((rec + ["", ""])[:2])
        lines.append(reader.line_num)
    frame = pd.DataFrame(rows, columns=["ImageId", "PredictionString"], dtype=object)
    return frame, np.asarray(lines, dtype=np.int64), bad_ids
