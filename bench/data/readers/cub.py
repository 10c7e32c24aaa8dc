"""CUB-200-2011 in its own layout (Wah et al., 2011), as downloaded (``CUB_200_2011/``).

Files under the root (or ``root/CUB_200_2011``), all space-separated, 1-based ids:

* ``images.txt``: ``image_id path`` (path under ``images/``, e.g. ``001.Black_footed_Albatross/x.jpg``);
* ``classes.txt``: ``class_id class_name`` (``1 001.Black_footed_Albatross``);
* ``image_class_labels.txt``: ``image_id class_id``;
* ``train_test_split.txt``: ``image_id is_training_image`` (1 = train, 0 = test);
* ``bounding_boxes.txt``: ``image_id x y width height`` (floats, one box per image).

Classes: the class names of ``classes.txt`` are the class ids (label = class_id - 1, file order);
readable names drop the number and underscores (``Black footed Albatross``).
Boxes: ``(int(x), int(y), int(x + w), int(y + h))`` — the sums are truncated to integers exactly
as wsolevaluation's CUB metadata holds them (image 1's ``60.0 27.0 325.0 304.0`` is
``60,27,385,331``), then read as inclusive pixel indices and clipped to the image like every box
(``x + w`` is one past the last pixel of the box, so most CUB boxes are one pixel wider and taller
than the annotated extent, as in the reference metadata). Splits: ``test`` (default), ``train``,
``all``. Optional segmentation masks (``segmentations/<path>.png``, CUB's separate download) are
attached to the images when present, enabling PxAP.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bench.data.dataset import ClassesArg, GroundTruth, Problem, Records, check_boxes, readonly, strip_image_ext

__all__ = ["CUB_FILES", "SPLITS", "find", "read"]

CUB_FILES: tuple[str, ...] = ("images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")
SPLITS: tuple[str, ...] = ("test", "train", "all")


def find(root: Path) -> Path | None:
    """The CUB folder (``root`` or ``root/CUB_200_2011``) holding images.txt and bounding_boxes.txt, or None."""
    for d in (root, root / "CUB_200_2011"):
        if (d / "images.txt").is_file() and (d / "bounding_boxes.txt").is_file():
            return d
    return None


def _table(path: Path, ncols: int, problems: list[Problem], what: str) -> dict[str, tuple[list[str], int]]:
    """Space-separated ``id fields...`` lines -> {id: (fields, line)}; bad and repeated lines reported."""
    out: dict[str, tuple[list[str], int]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("missing-file" if isinstance(exc, FileNotFoundError) else "unreadable", str(path), f"cannot read ({exc})", f"provide {path.name} ('{what}' per line)"))
        return out
    for n, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != ncols:
            problems.append(Problem("bad-line", f"{path}:{n}", f"has {len(parts)} fields, expected {ncols}", f"write lines as '{what}'"))
            continue
        if parts[0] in out:
            problems.append(Problem("duplicate-id", f"{path}:{n}", f"id {parts[0]} repeats line {out[parts[0]][1]}", "list each id once"))
            continue
        out[parts[0]] = (parts[1:], n)
    return out


def read(root: Path, classes: ClassesArg, problems: list[Problem], ann_ids: set[str], *, split: str | None = None) -> tuple[GroundTruth, str]:
    """Parse the CUB files; returns ``(gt, split)`` (problems appended, ``ann_ids`` filled)."""
    split = split or "test"
    base = find(root) or root
    if split not in SPLITS:
        problems.append(Problem("bad-split", str(base), f"unknown split {split!r} for CUB", f"use one of {', '.join(SPLITS)}"))
        return GroundTruth("cub", (), {}, base, class_source="cub"), split
    if classes is not None:
        problems.append(Problem("class-list", str(base / "classes.txt"), "CUB names its classes in classes.txt", "leave classes= unset for CUB data"))
    images = _table(base / "images.txt", 2, problems, "image_id path")
    cls_rows = _table(base / "classes.txt", 2, problems, "class_id class_name")
    labels = _table(base / "image_class_labels.txt", 2, problems, "image_id class_id")
    splits = _table(base / "train_test_split.txt", 2, problems, "image_id is_training_image")
    boxes = _table(base / "bounding_boxes.txt", 5, problems, "image_id x y width height")

    number: dict[str, int] = {}
    ids: list[str] = []
    for k, (cid, ((name,), ln)) in enumerate(sorted(cls_rows.items(), key=lambda kv: kv[1][1])):
        number[cid] = k
        ids.append(name)
    cls = tuple(ids)
    records: Records = {}
    paths: dict[str, str] = {}
    where_box: list[str] = []
    all_boxes: list[list[int]] = []
    for img, ((path,), ln) in images.items():
        flag = splits.get(img)
        if flag is None:
            problems.append(Problem("no-split", f"{base / 'train_test_split.txt'}", f"image {img} ({path}) has no train/test flag", f"add a line '{img} 0|1'"))
            continue
        if flag[0][0] not in ("0", "1"):
            problems.append(Problem("bad-line", f"{base / 'train_test_split.txt'}:{flag[1]}", f"is_training_image {flag[0][0]!r} is not 0 or 1", "write 0 (test) or 1 (train)"))
            continue
        if split != "all" and (flag[0][0] == "1") != (split == "train"):
            continue
        stem = strip_image_ext(os.path.basename(path))
        ann_ids.add(stem)
        if stem in paths:
            problems.append(Problem("duplicate-id", f"{base / 'images.txt'}:{ln}", f"image id {stem} is also {paths[stem]}", "keep one file per image id"))
            continue
        paths[stem] = path
        lab = labels.get(img)
        if lab is None or lab[0][0] not in number:
            problems.append(
                Problem("no-label" if lab is None else "bad-label", str(base / "image_class_labels.txt") + (f":{lab[1]}" if lab else ""),
                        f"image {img} ({path}) has no known class", "give it a class_id listed in classes.txt")
            )
            continue
        box = boxes.get(img)
        if box is None:
            problems.append(Problem("no-boxes", str(base / "bounding_boxes.txt"), f"image {img} ({path}) has no box", f"add a line '{img} x y width height'"))
            continue
        try:
            x, y, w, h = (float(v) for v in box[0])
        except ValueError:
            problems.append(Problem("bad-box", f"{base / 'bounding_boxes.txt'}:{box[1]}", f"box {box[0]} is not four numbers", "write 'image_id x y width height'"))
            continue
        if not all(np.isfinite([x, y, w, h])) or w < 0 or h < 0:
            problems.append(Problem("bad-box", f"{base / 'bounding_boxes.txt'}:{box[1]}", f"box {box[0]} has a negative or non-finite size", "write a non-negative width and height"))
            continue
        b = [int(np.floor(x)), int(np.floor(y)), int(np.floor(x + w)), int(np.floor(y + h))]
        all_boxes.append(b)
        where_box.append(f"{base / 'bounding_boxes.txt'}:{box[1]}")
        records[stem] = (number[lab[0][0]], readonly(np.asarray([b], dtype=np.int64)))
    check_boxes(np.asarray(all_boxes, dtype=np.int64).reshape(-1, 4), where_box, problems)
    masks: dict[str, tuple[tuple[str, ...], str]] = {}
    seg = base / "segmentations"
    if seg.is_dir():
        for stem, path in paths.items():
            rel = os.path.splitext(path)[0] + ".png"
            if (seg / rel).is_file():
                masks[stem] = ((f"segmentations/{rel}",), "")
    gt = GroundTruth(
        "cub", cls, records, base, paths=paths, class_source="cub", class_file=base / "classes.txt",
        image_bases=(base / "images",), masks=masks,
    )
    return gt, split
