"""Multi-label data sets for the pointing game: every (image, class present) pair, its region and flags.

Types shared by the PASCAL VOC 2007 detection reader (:mod:`bench.data.readers.voc_detection`) and
the COCO instances reader (:mod:`bench.data.readers.coco_instances`):

- :class:`ClassInImage`: one class present in one image: its boxes (0-based inclusive xyxy, the
  harness's convention everywhere), the VOC ``difficult`` flag of each box (all False for COCO) and,
  for COCO, the ids of its instance annotations (their masks make the region).
- :class:`MultiLabelImage`: an image, its size ``(H, W)`` and the classes present.
- :class:`MultiLabelDataset`: the images, the data set's class ids (VOC: the 20 class names; COCO:
  the category ids as strings) and readable names, and :meth:`MultiLabelDataset.region`, the
  class's ground-truth region as an ``(H, W)`` bool mask at the original image size: VOC, the union
  of the class's boxes (difficult ones included, as TorchRay's ``voc_as_mask``); COCO, the union of
  the class's instance masks (``pycocotools`` ``annToMask``, crowd annotations included, as
  TorchRay's ``coco_as_mask``).

Which pairs are scored (:func:`pair_status`): a VOC pair whose boxes are all ``difficult`` is
skipped (``all-boxes-difficult``); on the EBP "difficult" subset (Zhang et al. 2016, the flag lists
TorchRay ships), a pair is skipped (``not-in-difficult-subset``) when its image is listed and the
class's flag is 0; an image not in the list keeps all its pairs (TorchRay's rule). Flag columns are
class positions: VOC, the 20 names in alphabetical order; COCO, the 80 categories sorted by id.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.core.saliency import boxes_to_mask
from bench.data.dataset import DataError, Problem

__all__ = [
    "DIFFICULT_FLAG_FILES",
    "SKIP_ALL_DIFFICULT",
    "SKIP_NOT_DIFFICULT",
    "ClassInImage",
    "MultiLabelDataset",
    "MultiLabelImage",
    "load_difficult_flags",
    "pair_status",
]

#: The EBP difficult-subset flag files, by layout, as TorchRay's package ships them.
DIFFICULT_FLAG_FILES: dict[str, str] = {
    "voc07": "pointing_game_ebp_voc07_difficult.txt",
    "coco": "pointing_game_ebp_coco_difficult.txt",
}
SKIP_ALL_DIFFICULT = "all-boxes-difficult"
SKIP_NOT_DIFFICULT = "not-in-difficult-subset"


@dataclass(frozen=True, eq=False)
class ClassInImage:
    """One class present in one image (see the module docstring)."""

    class_index: int  # position in MultiLabelDataset.class_ids
    boxes: np.ndarray  # (k, 4) int64, 0-based inclusive xyxy
    difficult: np.ndarray  # (k,) bool
    ann_ids: tuple[int, ...] = ()  # COCO annotation ids (masks)


@dataclass(frozen=True, eq=False)
class MultiLabelImage:
    """One image: id (file stem), path, size ``(H, W)`` and the classes present (sorted by index)."""

    image_id: str
    path: Path
    size: tuple[int, int]
    classes: tuple[ClassInImage, ...]


@dataclass(eq=False)
class MultiLabelDataset:
    """A multi-label data set: images, class ids/names and the rule that makes a class's region."""

    layout: str  # 'voc07' | 'coco'
    root: Path
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    images: tuple[MultiLabelImage, ...]
    #: ``masks(image, class) -> (H, W) bool`` for mask layouts (COCO); None: boxes make the region
    masks: Callable[[MultiLabelImage, ClassInImage], np.ndarray] | None = field(default=None, repr=False)
    split: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_pairs(self) -> int:
        return sum(len(im.classes) for im in self.images)

    def region(self, image: MultiLabelImage, cls: ClassInImage) -> np.ndarray:
        """The class's ground-truth region at the original size, ``(H, W)`` bool."""
        if self.masks is not None:
            return self.masks(image, cls)
        return boxes_to_mask(cls.boxes, image.size).numpy()

    def describe(self) -> dict:
        return {
            "layout": self.layout,
            "root": str(self.root),
            "split": self.split,
            "images": len(self.images),
            "pairs": self.num_pairs,
            "classes": len(self.class_ids),
            "images_without_classes": sum(1 for im in self.images if not im.classes),
        }


def load_difficult_flags(layout: str, path: str | Path | None = None, num_classes: int | None = None) -> dict[str, np.ndarray]:
    """The EBP difficult-subset flags ``{image stem: (C,) bool}``.

    From ``path`` when given, else from the installed ``torchray`` package (``torchray/benchmark/``,
    the optional extra ``torchray``). Each line: the image stem, then one 0/1 flag per class,
    tab-separated. Raises :class:`DataError` naming the file on a malformed line or a class count
    other than ``num_classes``.
    """
    if layout not in DIFFICULT_FLAG_FILES:
        raise ValueError(f"no difficult-subset flags for layout {layout!r} (only {sorted(DIFFICULT_FLAG_FILES)})")
    name = DIFFICULT_FLAG_FILES[layout]
    if path is None:
        try:
            text = importlib.resources.files("torchray.benchmark").joinpath(name).read_text()
        except (ModuleNotFoundError, FileNotFoundError) as exc:
            raise DataError(
                [Problem("missing-flags", name, f"the difficult-subset flag list is not available ({exc})",
                         "pip install 'wsol-bench[torchray]' (its package ships the list), or pass the file with --difficult-flags")]
            ) from None
        where = f"torchray/benchmark/{name}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise DataError([Problem("unreadable", where, f"cannot read the flag file ({exc})", "pass a readable file")]) from None
    flags: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.rstrip("\n").split("\t")
        bits = cols[1:]
        if any(b.strip() not in ("0", "1") for b in bits) or (num_classes is not None and len(bits) != num_classes):
            problems.append(Problem("bad-flags", f"{where}:{n}", f"expected an image name and {num_classes or 'the'} 0/1 class flags, tab-separated",
                                    "use the flag list TorchRay ships for this data set"))
            continue
        flags[cols[0].strip()] = np.array([b.strip() == "1" for b in bits], dtype=bool)
    if problems:
        raise DataError(problems, context=where)
    return flags


def pair_status(image: MultiLabelImage, cls: ClassInImage, flags: dict[str, np.ndarray] | None) -> str | None:
    """None when the pair is scored, else the reason it is skipped (see the module docstring)."""
    if len(cls.difficult) and bool(np.all(cls.difficult)):
        return SKIP_ALL_DIFFICULT
    if flags is not None:
        row = flags.get(image.image_id)
        if row is not None and not bool(row[cls.class_index]):
            return SKIP_NOT_DIFFICULT
    return None
