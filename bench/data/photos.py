"""Real photographs laid out as a tiny ILSVRC-2012-style validation set (the quick-start data and the end-to-end tests).

Where the photos come from
--------------------------
Every image is a photograph that ships *inside* the scikit-image wheel, in the package
folder ``skimage/data/``. They are read straight from that folder; nothing is downloaded
(``skimage.data`` would fetch only the files that are *not* bundled). Sources and licences,
as given in scikit-image's data docstrings (``skimage/data/_fetchers.py``; the README.txt of
that folder only explains the bundled subset and points there):

* ``chelsea.png``   - Stefan van der Walt's cat Chelsea. No copyright restrictions, CC0.
* ``coffee.png``    - Rachel Michetti. No copyright restrictions, CC0.
* ``rocket.jpg``    - SpaceX Falcon 9 on its launch pad (flickr, SpaceX photos), released
  into the public domain by SpaceX.
* ``astronaut.png`` - NASA portrait of Eileen Collins (with a space-shuttle model in the
  background). No known copyright restrictions, public domain.
* ``motorcycle_left.png`` / ``motorcycle_right.png`` - the two views of the Middlebury 2014
  stereo pair "Motorcycle" (Scharstein et al.), down-sampled by scikit-image.
* ``camera.png``    - "cameraman" by Lav Varshney (grayscale). No copyright restrictions, CC0.
* ``clock_motion.png`` - motion-blurred wall clock by Stefan van der Walt (grayscale).
  Released into the public domain.

The two stereo views are two separate exposures (different camera positions), not crops
of one file; they are labelled with *different* objects (the motorcycle in one, the
cardboard boxes on the shelves in the other), so every WNID in the set is distinct.

The ground-truth boxes and class choices were drawn **by hand for this project** (by
looking at each photo with the box rendered on top and tightening it), not taken from
any dataset. Coordinates follow the project convention: ``(xmin, ymin, xmax, ymax)``,
0-based, *inclusive* pixel indices in the original photo (``xmax <= width - 1``).
``coins.png`` and the remaining bundled images were left out on purpose: they show
nothing that has an ImageNet-1k class (coins, moon surface, retina, galaxies, text).

Layouts written
---------------
``write_real_photo_val(out)`` -> ``out/voc`` (returned):
    ``val/<id>.JPEG`` (quality 95; the two grayscale photos are stored as mode-``L``
    JPEGs on purpose, to exercise the gray->RGB path) and the official ILSVRC per-image
    PASCAL-VOC XML ``Annotations/CLS-LOC/val/<id>.xml``.
``write_real_photo_val_csv(out)`` -> ``out/csv`` (returned):
    Kaggle-style ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt`` and a ``val``
    symlink to ``out/voc/val`` (copied where symlinks are unavailable), so each root
    holds exactly one ground-truth layout.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import NamedTuple


from PIL import Image

from bench.data.fixtures import voc_annotation_xml

__all__ = [
    "RealPhoto",
    "PHOTOS",
    "PHOTO_SIZES",
    "skimage_data_dir",
    "write_real_photo_val",
    "write_real_photo_val_csv",
]

Box = tuple[int, int, int, int]


class RealPhoto(NamedTuple):
    image_id: str
    file: str  # file name inside skimage/data/
    wnid: str
    boxes: list[Box]  # xyxy, 0-based, inclusive, original-photo pixels
    note: str


PHOTOS: tuple[RealPhoto, ...] = (
    RealPhoto(
        "PHOTO_val_00000001", "chelsea.png", "n02123045",  # tabby, tabby cat
        [(0, 0, 398, 299)],
        "close-up of a tabby cat's head; cut off by the left/top/bottom borders "
        "(EfficientNet-Lite0 prefers Egyptian cat, tabby is in its top 3)",
    ),
    RealPhoto(
        "PHOTO_val_00000002", "coffee.png", "n07920052",  # espresso
        [(173, 18, 408, 305)],
        "espresso in a cup on a saucer; box = cup incl. handle, saucer and spoon excluded",
    ),
    RealPhoto(
        "PHOTO_val_00000003", "rocket.jpg", "n03773504",  # missile
        [(309, 127, 335, 407)],
        "Falcon 9 rocket on the pad; thin tall object, pad towers/launch mount excluded",
    ),
    RealPhoto(
        "PHOTO_val_00000004", "astronaut.png", "n04266014",  # space shuttle
        [(354, 1, 460, 280)],
        "space-shuttle model (orbiter, tank, boosters, stand) in the top-right corner of an "
        "astronaut portrait; small object, not the salient one",
    ),
    RealPhoto(
        "PHOTO_val_00000005", "motorcycle_left.png", "n03785016",  # moped
        [(91, 19, 682, 452)],
        "red motorcycle in a garage (left stereo view); box from tail light to front tyre, "
        "mirror top to tyre bottom",
    ),
    RealPhoto(
        "PHOTO_val_00000006", "camera.png", "n04485082",  # tripod
        [(230, 187, 405, 511)],
        "grayscale: tripod under a camcorder, legs cut off by the bottom border",
    ),
    RealPhoto(
        "PHOTO_val_00000007", "clock_motion.png", "n04548280",  # wall clock
        [(141, 94, 277, 214)],
        "grayscale: wall clock, strongly motion-blurred horizontally; box = visible smear",
    ),
    RealPhoto(
        "PHOTO_val_00000008", "motorcycle_right.png", "n02971356",  # carton
        [(505, 30, 565, 98), (570, 67, 611, 100), (612, 79, 652, 101), (596, 184, 660, 274)],
        "four cardboard boxes on the garage shelves (right stereo view); multi-instance GT, "
        "small objects the classifier barely sees",
    ),
)

#: (width, height) of every source photo, checked before writing so that a changed
#: scikit-image photo cannot silently misalign the hand-drawn boxes.
PHOTO_SIZES: dict[str, tuple[int, int]] = {
    "PHOTO_val_00000001": (451, 300),
    "PHOTO_val_00000002": (600, 400),
    "PHOTO_val_00000003": (640, 427),
    "PHOTO_val_00000004": (512, 512),
    "PHOTO_val_00000005": (741, 500),
    "PHOTO_val_00000006": (512, 512),
    "PHOTO_val_00000007": (400, 300),
    "PHOTO_val_00000008": (741, 500),
}

_WNIDS_TXT = Path(__file__).resolve().parents[2] / "bench" / "resources" / "imagenet_wnids.txt"


def skimage_data_dir() -> Path:
    """The ``skimage/data`` folder of the installed scikit-image (bundled files only)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-image is not installed; it ships the test photographs")
    return Path(spec.origin).parent / "data"


def _load_photo(photo: RealPhoto) -> Image.Image:
    path = skimage_data_dir() / photo.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not bundled with this scikit-image install")
    with Image.open(path) as im:
        im.load()
        out = im.convert("L") if im.mode in ("L", "I;16", "I", "1") else im.convert("RGB")
    if out.size != PHOTO_SIZES[photo.image_id]:
        raise ValueError(
            f"{photo.file} is {out.size[0]}x{out.size[1]}, the hand-drawn boxes were made for "
            f"{PHOTO_SIZES[photo.image_id][0]}x{PHOTO_SIZES[photo.image_id][1]}"
        )
    return out


def write_real_photo_val(out_dir: Path) -> Path:
    """Write the photos + per-image VOC XML under ``out_dir/voc`` and return that root."""
    root = Path(out_dir) / "voc"
    img_dir = root / "val"
    ann_dir = root / "Annotations" / "CLS-LOC" / "val"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for photo in PHOTOS:
        im = _load_photo(photo)
        w, h = im.size
        im.save(img_dir / f"{photo.image_id}.JPEG", format="JPEG", quality=95)
        depth = 1 if im.mode == "L" else 3
        truncated = [int(x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1) for x0, y0, x1, y1 in photo.boxes]
        (ann_dir / f"{photo.image_id}.xml").write_bytes(
            voc_annotation_xml(photo.image_id, w, h, depth, photo.wnid, photo.boxes, truncated=truncated)
        )
    return root


def write_real_photo_val_csv(out_dir: Path) -> Path:
    """Write the Kaggle-CSV root ``out_dir/csv`` (sharing ``out_dir/voc/val``) and return it."""
    out_dir = Path(out_dir)
    voc_val = out_dir / "voc" / "val"
    if not all((voc_val / f"{p.image_id}.JPEG").is_file() for p in PHOTOS):
        write_real_photo_val(out_dir)
    root = out_dir / "csv"
    root.mkdir(parents=True, exist_ok=True)
    rows = ["ImageId,PredictionString"]
    for photo in PHOTOS:
        pred = " ".join(f"{photo.wnid} {a} {b} {c} {d}" for a, b, c, d in photo.boxes)
        rows.append(f"{photo.image_id},{pred}")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    shutil.copyfile(_WNIDS_TXT, root / "LOC_synset_mapping.txt")
    link = root / "val"
    if not (link.exists() or link.is_symlink()):
        try:
            os.symlink(os.path.relpath(voc_val, root), link, target_is_directory=True)
        except (OSError, NotImplementedError):  # e.g. Windows without symlink rights
            shutil.copytree(voc_val, link)
    return root
