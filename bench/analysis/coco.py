"""A run's guesses as COCO-format detections, and box AP with pycocotools' ``COCOeval``.

Format (:func:`coco_json`):

* ``images``: one per evaluated image: ``id`` (1, 2, ... in image-id order), ``file_name``
  (the harness's image id), ``width``, ``height``;
* ``categories``: ``id`` = the class index (0-based, sorted-WNID order), ``name`` (the WNID when
  ``class_names`` is given, else the index as text);
* ``annotations`` (GT): one per GT box, ``category_id`` = the image's label,
  ``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]``, ``area = w * h``, ``iscrowd = 0``;
* ``detections``: one per guess: ``image_id``, ``category_id`` (the guessed class), ``bbox``
  as above, ``score`` = that class's softmax probability (from ``top5_scores``).

Inclusive -> COCO: the harness's boxes are 0-based INCLUSIVE ``(x1, y1, x2, y2)``; COCO boxes
are ``[x, y, w, h]`` covering ``[x, x + w)``. With ``w = x2 - x1 + 1`` the two cover the same
pixels, and COCO's IoU (``min(xa + wa, xb + wb) - max(xa, xb)``, areas ``w * h``) equals the
devkit's inclusive IoU exactly.

Which images: status ``ok`` and not blacklisted (the localization denominator). Guesses of
repeated classes (``tight_loose``: c1, c1, c2, c2, c3) are all kept, with the same score.
COCOeval conventions apply: AP is averaged over categories that have GT boxes in the evaluated
images (detections of other categories are not counted), AP = IoU 0.50:0.95, AP50, AP75,
at most 100 detections per image.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.records import parse_boxes, parse_floats, parse_ints

__all__ = ["inclusive_to_coco", "coco_json", "coco_eval"]


def inclusive_to_coco(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` inclusive ``(x1, y1, x2, y2)`` -> ``(n, 4)`` COCO ``[x1, y1, x2-x1+1, y2-y1+1]``."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1])


def _evaluated(records: pd.DataFrame) -> pd.DataFrame:
    frame = records[(records["status"] == "ok") & (records["blacklisted"].astype(int) != 1)]
    return frame.sort_values("image_id", kind="stable")


def coco_json(
    records: pd.DataFrame,
    gt: Mapping[str, tuple[int, np.ndarray]],
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """COCO GT (``images``, ``categories``, ``annotations``) plus ``detections`` of one run.

    Args:
        records: the run's per-image records (``RunDir(path).read_records()``).
        gt: image id -> ``(label, boxes (m, 4) inclusive)``, loaded by the caller from the data
            (e.g. ``{im.image_id: (im.label, im.boxes) for im in valset.images}``).
        n_classes: number of categories (1000 for ILSVRC).
        class_names: optional names per class index (e.g. WNIDs).

    Returns:
        ``{"images", "categories", "annotations", "detections"}`` (JSON-serialisable).

    Raises:
        ValueError: an evaluated image has no GT entry, or a class is out of range.
    """
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
    frame = _evaluated(records)
    images, annotations, detections = [], [], []
    for num, row in enumerate(frame.itertuples(index=False), start=1):
        image_id = str(row.image_id)
        if image_id not in gt:
            raise ValueError(f"no GT boxes given for image {image_id!r}")
        label, boxes = gt[image_id]
        images.append({"id": num, "file_name": image_id, "width": int(row.width), "height": int(row.height)})
        for box in inclusive_to_coco(boxes).tolist():
            annotations.append(
                {"id": len(annotations) + 1, "image_id": num, "category_id": int(label), "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
        classes = parse_ints(row.guess_classes)
        guess_boxes = parse_boxes(row.guess_boxes)
        if guess_boxes.shape[0] == 0:
            continue  # a classification-only run: no detections
        scores = dict(zip(parse_ints(row.top5_classes).tolist(), parse_floats(row.top5_scores).tolist()))
        for cls, box in zip(classes.tolist(), inclusive_to_coco(guess_boxes).tolist()):
            if not 0 <= cls < n_classes:
                raise ValueError(f"class {cls} of image {image_id!r} is outside [0, {n_classes})")
            detections.append({"image_id": num, "category_id": int(cls), "bbox": box, "score": float(scores[cls])})
    categories = [
        {"id": c, "name": class_names[c] if class_names is not None else str(c)} for c in range(n_classes)
    ]
    return {"images": images, "categories": categories, "annotations": annotations, "detections": detections}


def coco_eval(
    records: pd.DataFrame, gt: Mapping[str, tuple[int, np.ndarray]], n_classes: int
) -> dict[str, Any]:
    """Box AP of a run's guesses with pycocotools (``iouType='bbox'``).

    Returns:
        ``{"AP", "AP50", "AP75", "images", "detections"}``; APs in [0, 1] (COCOeval's
        ``stats[0:3]``), 0.0 when there is no detection.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = coco_json(records, gt, n_classes)
    out: dict[str, Any] = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "images": len(data["images"]),
                           "detections": len(data["detections"])}  # fmt: skip
    if not data["detections"] or not data["annotations"]:
        return out
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_gt = COCO()
        coco_gt.dataset = {k: data[k] for k in ("images", "categories", "annotations")}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(data["detections"])
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out.update(AP=float(ev.stats[0]), AP50=float(ev.stats[1]), AP75=float(ev.stats[2]))
    return out
