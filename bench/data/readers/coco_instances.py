"""COCO instances layout, multi-label, through pycocotools: every category present in each image.

``ROOT`` holds ``annotations/instances_<split>.json`` (default split ``val2014``) and the images in
``<split>/`` (or ``images/<split>/``); ``--annotations FILE`` may name the JSON directly. Class ids
are the JSON's category ids as strings, sorted by id (the 80 categories of COCO 2014/2017 in the
order of TorchRay's flag columns); names are the JSON's category names. Every annotation counts,
``iscrowd`` ones included (TorchRay's ``coco_as_mask`` does so); the region of a class is the union
of its annotations' masks (``COCO.annToMask``: polygons and RLE). Boxes (``[x, y, w, h]`` floats)
become the inclusive pixels they touch: ``(floor x, floor y, ceil(x + w) - 1, ceil(y + h) - 1)``,
at least one pixel, clipped to the image. Images without annotations have no pairs (they are
counted in the run's summary, ``images_without_classes``).
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np

from bench.data.dataset import DataError, Problem
from bench.data.multilabel import ClassInImage, MultiLabelDataset, MultiLabelImage

__all__ = ["annotation_file", "read"]


def annotation_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _box(bbox: list[float], size: tuple[int, int]) -> list[int]:
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0, math.floor(x)), max(0, math.floor(y))
    x2 = min(size[1] - 1, max(x1, math.ceil(x + w) - 1))
    y2 = min(size[0] - 1, max(y1, math.ceil(y + h) - 1))
    return [min(x1, size[1] - 1), min(y1, size[0] - 1), x2, y2]


def read(root: Path | str, split: str = "val2014", annotations: Path | str | None = None) -> MultiLabelDataset:
    """Read the instances JSON and index every image's categories (boxes and annotation ids).

    Raises :class:`DataError` naming the file on a missing/invalid JSON or missing images.
    """
    from pycocotools.coco import COCO

    root = Path(root)
    ann_file = Path(annotations) if annotations is not None else annotation_file(root, split)
    if not ann_file.is_file():
        raise DataError([Problem("no-coco", str(ann_file), "instances JSON not found", f"pass --data the COCO folder holding annotations/instances_{split}.json (or --annotations FILE)")])
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
    except Exception as exc:  # noqa: BLE001 - pycocotools raises plain exceptions on bad JSON
        raise DataError([Problem("bad-coco", str(ann_file), f"cannot load the instances JSON ({type(exc).__name__}: {exc})", "use the official instances JSON")]) from None
    cat_ids = sorted(coco.getCatIds())
    index = {c: i for i, c in enumerate(cat_ids)}
    names = tuple(coco.cats[c]["name"] for c in cat_ids)
    image_dir = next((d for d in (root / split, root / "images" / split) if d.is_dir()), root / split)
    problems: list[Problem] = []
    images: list[MultiLabelImage] = []
    for img_id in sorted(coco.getImgIds()):
        info = coco.imgs[img_id]
        path = image_dir / info["file_name"]
        if not path.is_file():
            problems.append(Problem("missing-image", str(path), "image file not found", f"put the {split} images in {image_dir}"))
            continue
        size = (int(info["height"]), int(info["width"]))
        by_class: dict[int, list[dict]] = {}
        for ann in coco.imgToAnns.get(img_id, []):
            if ann["category_id"] not in index:
                problems.append(Problem("unknown-category", f"{ann_file} (annotation {ann.get('id')})", f"category {ann['category_id']} is not in 'categories'", "use the official JSON"))
                continue
            by_class.setdefault(index[ann["category_id"]], []).append(ann)
        classes = tuple(
            ClassInImage(
                c,
                np.array([_box(a["bbox"], size) for a in anns], dtype=np.int64).reshape(-1, 4),
                np.zeros(len(anns), dtype=bool),
                tuple(int(a["id"]) for a in anns),
            )
            for c, anns in sorted(by_class.items())
        )
        images.append(MultiLabelImage(Path(info["file_name"]).stem, path.resolve(), size, classes))
    if problems:
        raise DataError(problems, context=str(ann_file))

    def masks(image: MultiLabelImage, cls: ClassInImage) -> np.ndarray:
        out = np.zeros(image.size, dtype=bool)
        for aid in cls.ann_ids:
            out |= coco.annToMask(coco.anns[aid]).astype(bool)
        return out

    return MultiLabelDataset("coco", root.resolve(), tuple(str(c) for c in cat_ids), names, tuple(images), masks=masks, split=split)
