"""PASCAL VOC 2007 detection layout, multi-label: every class present in each image of a split.

``ROOT`` is ``VOCdevkit/VOC2007`` itself, or a folder holding ``VOC2007/`` or
``VOCdevkit/VOC2007/``. Inside: ``ImageSets/Main/<split>.txt`` (one image id per line; default split
``test``), ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. Each ``<object>`` gives ``<name>``
(one of the 20 VOC classes), ``<difficult>`` (0/1, absent = 0) and ``<bndbox>``; VOC pixel
coordinates are 1-based, so the harness's 0-based inclusive box is ``(xmin-1, ymin-1, xmax-1,
ymax-1)`` (TorchRay's ``voc_as_mask`` does the same), clipped to the ``<size>`` the file states.
Class ids are the 20 names, alphabetical (the order of TorchRay's flag columns).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from bench.data.dataset import DataError, Problem, parse_int
from bench.data.multilabel import ClassInImage, MultiLabelDataset, MultiLabelImage

__all__ = ["VOC_CLASSES", "find_root", "read"]

#: The 20 PASCAL VOC classes, alphabetical (the data set's own names).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def find_root(root: Path) -> Path | None:
    """The ``VOC2007`` folder (the one with ``Annotations`` and ``ImageSets/Main``) at or under ``root``."""
    for cand in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return cand
    return None


def _parse(f: Path, image_id: str, problems: list[Problem]) -> tuple[tuple[int, int], list[tuple[int, list[int], bool]]] | None:
    try:
        data = f.read_bytes()
    except OSError as exc:
        problems.append(Problem("missing-annotation", str(f), f"cannot read the annotation ({exc})", "restore the file from the VOC2007 test archive"))
        return None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        problems.append(Problem("unsafe-xml", str(f), "contains a DOCTYPE/ENTITY declaration (refused)", "use the plain annotation XML"))
        return None
    try:
        tree = ET.fromstring(data)
    except ET.ParseError as exc:
        problems.append(Problem("malformed-xml", str(f), f"malformed XML ({exc})", "re-extract this file from the VOC2007 archive"))
        return None
    w, h = (parse_int(tree.findtext(f"size/{t}")) for t in ("width", "height"))
    if not w or not h or w < 1 or h < 1:
        problems.append(Problem("bad-size", str(f), "<size> has no positive integer width/height", "write the image's width and height in pixels"))
        return None
    objects: list[tuple[int, list[int], bool]] = []
    for k, obj in enumerate(tree.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        coords = [parse_int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
        diff = (obj.findtext("difficult") or "0").strip()
        where = f"{f} (object {k})"
        if name not in VOC_CLASSES:
            problems.append(Problem("unknown-class", where, f"<name> {name!r} is not one of the 20 VOC classes", "use the VOC class names"))
            continue
        if any(c is None for c in coords) or diff not in ("0", "1"):
            problems.append(Problem("bad-object", where, "<bndbox> needs integer xmin/ymin/xmax/ymax and <difficult> 0 or 1", "fix the object"))
            continue
        x1, y1, x2, y2 = (int(c) - 1 for c in coords)  # type: ignore[operator]
        if not (0 <= x1 <= x2 and 0 <= y1 <= y2) or x1 > w - 1 or y1 > h - 1:
            problems.append(Problem("bad-box", where, f"box {coords} (1-based) is empty or outside the {w}x{h} image", "fix the box"))
            continue
        objects.append((VOC_CLASSES.index(name), [x1, y1, min(x2, w - 1), min(y2, h - 1)], diff == "1"))
    return (h, w), objects


def read(root: Path | str, split: str = "test") -> MultiLabelDataset:
    """Read the split's images and, per image, the classes present with boxes and difficult flags.

    Raises :class:`DataError` listing every problem (missing files, bad objects), each with its fix.
    """
    root = Path(root)
    base = find_root(root)
    if base is None:
        raise DataError([Problem("no-voc", str(root), "no VOC2007 folder (Annotations/ and ImageSets/Main/) here, in VOC2007/ or in VOCdevkit/VOC2007/",
                                 "pass --data the VOCdevkit folder of the VOC2007 test archive")])
    split_file = base / "ImageSets" / "Main" / f"{split}.txt"
    try:
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DataError([Problem("no-split", str(split_file), f"cannot read the split list ({exc})", f"use a split that ImageSets/Main holds (e.g. test) or restore {split}.txt")]) from None
    problems: list[Problem] = []
    images: list[MultiLabelImage] = []
    for image_id in ids:
        parsed = _parse(base / "Annotations" / f"{image_id}.xml", image_id, problems)
        path = base / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            problems.append(Problem("missing-image", str(path), "image file not found", "restore JPEGImages from the VOC2007 archive"))
        if parsed is None:
            continue
        size, objects = parsed
        classes = []
        for c in sorted({o[0] for o in objects}):
            mine = [o for o in objects if o[0] == c]
            classes.append(ClassInImage(c, np.array([o[1] for o in mine], dtype=np.int64).reshape(-1, 4), np.array([o[2] for o in mine], dtype=bool)))
        images.append(MultiLabelImage(image_id, path.resolve(), size, tuple(classes)))
    if problems:
        raise DataError(problems, context=str(base))
    return MultiLabelDataset("voc07", base.resolve(), VOC_CLASSES, VOC_CLASSES, tuple(images), split=split)
