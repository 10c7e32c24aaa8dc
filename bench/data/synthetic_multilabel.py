"""A small generated multi-label set with known geometry, in the VOC 2007 and COCO instances layouts.

:data:`OBJECTS` fixes every image's size and objects (class name, 0-based inclusive box, VOC
``difficult``), chosen so that the pointing game's outcome of a centre point is plain by hand
(every region lies either over the centre or farther than 20 px from it; see
``tests/test_pointing_run.py``). :func:`write_voc` writes ``VOC2007/`` (Annotations with 1-based
coordinates, JPEGImages, ImageSets/Main/test.txt); :func:`write_coco` writes
``annotations/instances_val2014.json`` and ``val2014/*.jpg`` with every object's mask as an exact
RLE of its box (category ids as COCO's: person 1, cat 17, dog 18). Images are flat grey with each
object a filled rectangle of its class's colour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["COCO_IDS", "OBJECTS", "SIZES", "write_coco", "write_voc"]

#: image id -> (H, W)
SIZES: dict[str, tuple[int, int]] = {
    "000001": (81, 101),
    "000002": (91, 121),
    "000003": (81, 101),
    "000004": (61, 141),
    "000005": (101, 101),
}
#: image id -> [(class, (x1, y1, x2, y2) 0-based inclusive, difficult)]
OBJECTS: dict[str, list[tuple[str, tuple[int, int, int, int], bool]]] = {
    "000001": [("cat", (40, 30, 60, 50), False), ("dog", (0, 0, 10, 10), False)],
    "000002": [("person", (80, 45, 110, 80), False), ("cat", (70, 40, 100, 60), False)],
    "000003": [("dog", (0, 0, 15, 15), True), ("person", (45, 35, 55, 45), False)],
    "000004": [("dog", (131, 0, 140, 60), False), ("dog", (65, 25, 75, 35), False), ("cat", (0, 50, 20, 60), False)],
    "000005": [("person", (0, 0, 20, 20), True), ("person", (50, 56, 60, 70), False)],
}
#: COCO category ids of the classes used (COCO's own ids)
COCO_IDS: dict[str, int] = {"person": 1, "cat": 17, "dog": 18}
_COLOURS = {"person": (200, 60, 60), "cat": (60, 200, 60), "dog": (60, 60, 200)}


def _image(image_id: str) -> np.ndarray:
    h, w = SIZES[image_id]
    im = np.full((h, w, 3), 128, dtype=np.uint8)
    for name, (x1, y1, x2, y2), _d in OBJECTS[image_id]:
        im[y1 : y2 + 1, x1 : x2 + 1] = _COLOURS[name]
    return im


def _save(im: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(im).save(path, quality=95)


def write_voc(out: Path | str) -> Path:
    """Write ``out/VOC2007`` and return it."""
    base = Path(out) / "VOC2007"
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, objects in OBJECTS.items():
        h, w = SIZES[image_id]
        objs = "".join(
            f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{x1 + 1}</xmin>"
            f"<ymin>{y1 + 1}</ymin><xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object>"
            for n, (x1, y1, x2, y2), d in objects
        )
        xml = (
            f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"
        )
        (base / "Annotations" / f"{image_id}.xml").write_text(xml)
        _save(_image(image_id), base / "JPEGImages" / f"{image_id}.jpg")
    (base / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in OBJECTS))
    return base


def write_coco(out: Path | str) -> Path:
    """Write ``out/annotations/instances_val2014.json`` and ``out/val2014/``; return ``out``."""
    from pycocotools import mask as mask_utils

    out = Path(out)
    images, anns = [], []
    for n, (image_id, objects) in enumerate(OBJECTS.items(), start=1):
        h, w = SIZES[image_id]
        name = f"COCO_val2014_{int(image_id):012d}.jpg"
        images.append({"id": n, "file_name": name, "height": h, "width": w})
        _save(_image(image_id), out / "val2014" / name)
        for cls, (x1, y1, x2, y2), _d in objects:
            m = np.zeros((h, w), dtype=np.uint8, order="F")
            m[y1 : y2 + 1, x1 : x2 + 1] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append({
                "id": len(anns) + 1, "image_id": n, "category_id": COCO_IDS[cls], "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1 + 1, y2 - y1 + 1], "area": float(m.sum()), "segmentation": rle,
            })
    cats = [{"id": i, "name": c, "supercategory": c} for c, i in sorted(COCO_IDS.items(), key=lambda t: t[1])]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "instances_val2014.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out
