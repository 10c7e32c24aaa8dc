"""Write a loaded data set in the other benchmarks' native layouts (test fixtures, no downloads).

* :func:`write_cub_layout`: CUB-200-2011's files (``images.txt``, ``classes.txt``,
  ``image_class_labels.txt``, ``train_test_split.txt``, ``bounding_boxes.txt``, ``images/``). CUB
  has one box per image, so every image must have exactly one. A box ``(x0, y0, x1, y1)`` is
  written ``x0 y0 (x1 - x0) (y1 - y0)`` as floats, which the CUB reader turns back into
  ``(x0, y0, x1, y1)`` (it truncates ``x + w``). Class ``i`` is ``{i+1:03d}.{Name_with_underscores}``.
* :func:`write_wsol_layout`: wsolevaluation's tree ``metadata/<NAME>/<split>/`` +
  ``dataset/<NAME>/<split>/<class folder>/<image>``; boxes (``localization.txt`` =
  ``path,x0,y0,x1,y1``) or, with ``masks``, OpenImages-style instance masks: instance ``k`` of an
  image is its object mask restricted to GT box ``k`` (so its bounding box is box ``k`` again),
  written beside the image as ``<id>_m<k>.png``, with an ignore file on the first line of every
  other image (an empty ignore field on the rest: wsolevaluation#33's case).

The same images (copied byte for byte) and GT come back from :func:`bench.data.open.open_dataset`,
so a run on any of the written layouts gives the same records as on the source.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from bench.data.dataset import Dataset

__all__ = ["write_cub_layout", "write_wsol_layout", "cub_class_id"]


def cub_class_id(index: int, name: str) -> str:
    """CUB-style class id: ``cub_class_id(0, 'Black footed Albatross') == '001.Black_footed_Albatross'``."""
    return f"{index + 1:03d}.{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}"


def write_cub_layout(dataset: Dataset, out: Path) -> Path:
    """Write ``dataset`` as CUB-200-2011 (all images in the test split) under ``out``; returns ``out``."""
    out = Path(out)
    folders = [cub_class_id(i, n) for i, n in enumerate(dataset.class_names or dataset.class_ids)]
    images, labels, split, boxes = [], [], [], []
    for k, im in enumerate(dataset.images, start=1):
        if len(im.boxes) != 1:
            raise ValueError(f"{im.image_id} has {len(im.boxes)} boxes; the CUB layout holds exactly one per image")
        rel = f"{folders[im.label]}/{im.path.name}"
        dst = out / "images" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(im.path, dst)
        images.append(f"{k} {rel}")
        labels.append(f"{k} {im.label + 1}")
        split.append(f"{k} 0")
        x0, y0, x1, y1 = (int(v) for v in im.boxes[0])
        boxes.append(f"{k} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}")
    for name, rows in (
        ("images.txt", images),
        ("classes.txt", [f"{i + 1} {f}" for i, f in enumerate(folders)]),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("bounding_boxes.txt", boxes),
    ):
        (out / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return out


def write_wsol_layout(
    dataset: Dataset,
    out: Path,
    name: str,
    split: str = "test",
    *,
    class_folder: Callable[[int, str], str] | None = None,
    masks: Callable[[str], np.ndarray] | None = None,
) -> Path:
    """Write ``dataset`` in wsolevaluation's layout under ``out`` (``metadata/<name>/<split folder>``).

    Args:
        name: the data set's name in the tree (``ILSVRC``, ``CUB``, ``OpenImages``).
        split: ``test`` or ``train-fullsup`` (folder ``val``).
        class_folder: ``(label, class id) -> folder`` of the images (default: the class id).
        masks: ``image_id -> (H, W) object mask`` (nonzero = object) to write OpenImages-style
            instance masks instead of boxes.
    Returns ``out``.
    """
    out = Path(out)
    folder = {"test": "test", "train-fullsup": "val"}[split]
    meta = out / "metadata" / name / folder
    meta.mkdir(parents=True, exist_ok=True)
    data = out / "dataset" / name
    ids, labels, sizes, locs = [], [], [], []
    for n, im in enumerate(dataset.images):
        cls = dataset.class_ids[im.label]
        sub = class_folder(im.label, cls) if class_folder is not None else cls
        rel = f"{folder}/{sub}/{im.path.name}"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(im.path, data / rel)
        with Image.open(im.path) as img:
            w, h = img.size
        ids.append(rel)
        labels.append(f"{rel},{im.label}")
        sizes.append(f"{rel},{w},{h}")
        if masks is None:
            locs += [f"{rel},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in im.boxes.tolist()]
            continue
        obj = np.asarray(masks(im.image_id)) > 0
        stem = rel.rsplit(".", 1)[0]
        ignore = ""
        if n % 2 == 0:  # every other image: an ignore box (the whole first box's rows), others an empty field
            ign = np.zeros(obj.shape, dtype=np.uint8)
            x0, y0, x1, y1 = im.boxes[0].tolist()
            ign[y0 : y1 + 1, :] = 255
            ignore = f"{stem}_ignore.png"
            Image.fromarray(ign).save(data / ignore)
        for k, (x0, y0, x1, y1) in enumerate(im.boxes.tolist()):
            inst = np.zeros(obj.shape, dtype=np.uint8)
            inst[y0 : y1 + 1, x0 : x1 + 1] = obj[y0 : y1 + 1, x0 : x1 + 1] * np.uint8(255)
            mask_rel = f"{stem}_m{k}.png"
            Image.fromarray(inst).save(data / mask_rel)
            locs.append(f"{rel},{mask_rel},{ignore if k == 0 else ''}")
    for fname, rows in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes), ("localization.txt", locs)):
        (meta / fname).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return out
