"""PASCAL VOC layout (ILSVRC's ``Annotations/CLS-LOC/val``): one XML file per image.

``<object><name>CLASS_ID</name><bndbox><xmin>...`` in the first of ``root/Annotations/CLS-LOC/val``,
``root/annotations``, ``root/bbox_val``, ``root/val`` holding ``*.xml`` files (flat or one level of
sub-folders). The image's ``<size>`` (when stated and non-zero) is used to check and clip boxes.
Class list: ``classes=``, else ``root/LOC_synset_mapping.txt``, else ImageNet's 1000 WNIDs (sorted).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from bench.data.dataset import (
    CLASS_FIX,
    CSV_SYNSETS,
    ClassesArg,
    GroundTruth,
    Problem,
    Records,
    check_boxes,
    has_file,
    parse_int,
    readonly,
    resolve_classes,
    strip_image_ext,
)

__all__ = ["VOC_DIRS", "find", "read"]

VOC_DIRS: tuple[str, ...] = ("Annotations/CLS-LOC/val", "annotations", "bbox_val", "val")


def find(root: Path) -> Path | None:
    """The annotation folder under ``root``, or None."""
    for rel in VOC_DIRS:
        d = root / rel
        if d.is_dir() and has_file(d, ".xml", subfolders=True):
            return d
    return None


def read(root: Path, classes: ClassesArg, problems: list[Problem], ann_ids: set[str]) -> GroundTruth:
    """Parse the VOC annotations under ``root`` (problems appended, ``ann_ids`` filled)."""
    cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
    ann_dir = find(root)
    if ann_dir is None:
        problems.append(
            Problem(
                "no-annotations",
                str(root),
                "no *.xml files in " + ", ".join(f"{v}/" for v in VOC_DIRS),
                "put the per-image XML files in one of these folders",
            )
        )
        return GroundTruth("voc", cls, {}, root, class_source=source, class_file=file)
    index = {w: i for i, w in enumerate(cls)}
    sizes: dict[str, tuple[int, int]] = {}
    records = _read_voc(ann_dir, index, problems, ann_ids, sizes)
    return GroundTruth("voc", cls, records, ann_dir, sizes=sizes, class_source=source, class_file=file)


def _voc_files(ann_dir: Path) -> list[Path]:
    files: list[Path] = []
    with os.scandir(ann_dir) as it:
        entries = list(it)
    for e in entries:
        if e.is_file() and e.name.lower().endswith(".xml"):
            files.append(Path(e.path))
        elif e.is_dir():
            with os.scandir(e.path) as sub:
                files += [Path(s.path) for s in sub if s.is_file() and s.name.lower().endswith(".xml")]
    return sorted(files)


def _voc_size(tree: ET.Element, f: Path, problems: list[Problem]) -> tuple[int, int] | None:
    """(width, height) from ``<size>``; None when absent or 0 (unknown); a problem when malformed."""
    size = tree.find("size")
    if size is None:
        return None
    texts = [(size.findtext(t) or "").strip() for t in ("width", "height")]
    if not all(texts):
        return None
    vals = [parse_int(t) for t in texts]
    if any(v is None or v < 0 for v in vals):
        problems.append(
            Problem(
                "bad-size",
                str(f),
                f"<size> width/height {texts[0]!r}/{texts[1]!r} are not non-negative integers",
                "write the image's width and height in pixels (or 0 if unknown)",
            )
        )
        return None
    w, h = vals
    return (w, h) if w and h else None  # type: ignore[return-value]


def _read_voc(
    ann_dir: Path,
    index: dict[str, int],
    problems: list[Problem],
    ann_ids: set[str],
    sizes: dict[str, tuple[int, int]] | None = None,
) -> Records:
    """Parse every XML file in ``ann_dir``; returns {image_id: (label, boxes)} and fills ``sizes``
    with the ``<size>`` of each image that states one."""
    records: Records = {}
    seen: dict[str, Path] = {}
    all_boxes: list[list[int]] = []
    where: list[str] = []
    for f in _voc_files(ann_dir):
        image_id = f.stem
        ann_ids.add(image_id)
        if image_id in seen:
            problems.append(
                Problem(
                    "duplicate-id",
                    str(f),
                    f"image id {image_id} is also annotated by {seen[image_id]}",
                    "keep exactly one XML file per image",
                )
            )
            continue
        seen[image_id] = f
        try:
            data = f.read_bytes()
        except OSError as exc:
            problems.append(
                Problem("unreadable", str(f), f"cannot read file ({exc})", "fix file permissions")
            )
            continue
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            problems.append(
                Problem(
                    "unsafe-xml",
                    str(f),
                    "contains a DOCTYPE/ENTITY declaration (refused: entity expansion)",
                    "use the plain annotation XML without DTD declarations",
                )
            )
            continue
        try:
            tree = ET.fromstring(data)
        except ET.ParseError as exc:
            line = exc.position[0] if getattr(exc, "position", None) else None
            problems.append(
                Problem(
                    "malformed-xml",
                    f"{f}:{line}" if line else str(f),
                    f"malformed XML ({exc})",
                    "re-extract this file from the annotation archive, or delete it",
                )
            )
            continue
        fname = tree.findtext("filename")
        if fname is not None and fname.strip() and strip_image_ext(fname.strip()) != image_id:
            problems.append(
                Problem(
                    "id-mismatch",
                    str(f),
                    f"<filename> is {fname.strip()!r} but the file is named {f.name!r}",
                    "name each XML file after the image it annotates",
                )
            )
        stated = _voc_size(tree, f, problems)
        if stated is not None and sizes is not None:
            sizes[image_id] = stated
        names: list[str] = []
        boxes: list[list[int]] = []
        ok = True
        for k, obj in enumerate(tree.iter("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            coords = [
                parse_int(bb.findtext(t)) if bb is not None else None
                for t in ("xmin", "ymin", "xmax", "ymax")
            ]
            if not name:
                problems.append(
                    Problem(
                        "bad-object",
                        f"{f} (object {k})",
                        "<object> has no <name>",
                        "give every object its WNID in <name>",
                    )
                )
                ok = False
            if any(c is None for c in coords):
                problems.append(
                    Problem(
                        "bad-object",
                        f"{f} (object {k})",
                        "<bndbox> is missing or has a missing/non-integer xmin/ymin/xmax/ymax",
                        "give integer pixel coordinates for all four bndbox fields",
                    )
                )
                ok = False
            if not name or any(c is None for c in coords):
                continue
            names.append(name)
            boxes.append(coords)  # type: ignore[arg-type]
        if not names and ok:
            problems.append(
                Problem(
                    "no-boxes",
                    str(f),
                    "has no <object> with a box",
                    "every validation image needs at least one box; restore the objects",
                )
            )
            continue
        unknown = sorted({n for n in names if n not in index})
        for n in unknown:
            problems.append(Problem("unknown-wnid", str(f), f"unknown class id {n!r}", CLASS_FIX))
        if len(set(names)) > 1:
            problems.append(
                Problem(
                    "mixed-classes",
                    str(f),
                    f"objects of several classes {sorted(set(names))}",
                    "every box of an image must have the image's class; fix the <name> fields",
                )
            )
        if not ok or unknown or len(set(names)) != 1:
            continue
        all_boxes += boxes
        where += [f"{f} (object {k})" for k in range(1, len(boxes) + 1)]
        records[image_id] = (index[names[0]], np.asarray(boxes, dtype=np.int64).reshape(-1, 4))
    check_boxes(np.asarray(all_boxes, dtype=np.int64).reshape(-1, 4), where, problems)
    for k, (lab, b) in records.items():
        records[k] = (lab, readonly(b))
    return records

