"""Open a data set: detect its layout, run that layout's reader, match images, validate.

Layouts (one reader module each, :mod:`bench.data.readers`):

``voc``   ILSVRC's per-image PASCAL VOC XML files (:mod:`bench.data.readers.voc`)
``csv``   Kaggle's ``LOC_val_solution.csv`` (:mod:`bench.data.readers.csv_solution`)
``wsol``  wsolevaluation's metadata, boxes or OpenImages masks (:mod:`bench.data.readers.wsol`)
``cub``   CUB-200-2011 as downloaded (:mod:`bench.data.readers.cub`)

:func:`open_dataset` returns a :class:`~bench.data.dataset.Dataset`; its
:meth:`~bench.data.dataset.Dataset.describe` is the JSON a run stores, and :func:`reopen` loads the
same data again from it (optionally from a moved root; compare the fingerprint after).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bench.data.classes import WNID_RE
from bench.data.dataset import (
    IMAGE_DIRS,
    BlacklistArg,
    ClassesArg,
    DataError,
    Dataset,
    GroundTruth,
    GTImage,
    PathLike,
    Problem,
    class_names_for,
    fit_boxes_to_images,
    image_header_size,
    parse_blacklist,
    pick_images_dir,
    readonly,
    scan_images,
)
from bench.data.readers import csv_solution, cub, voc, wsol

__all__ = ["LAYOUTS", "SPLITS", "detect_layout", "read_gt", "open_dataset", "reopen"]

LAYOUTS: tuple[str, ...] = ("voc", "csv", "wsol", "cub")
#: Splits a caller may ask for (CUB: test/train/all; wsol metadata: test/train-fullsup).
SPLITS: tuple[str, ...] = ("test", "train-fullsup", "train", "all")


def _layouts_present(root: Path, split: str | None, metadata: Path | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, where in (
        ("voc", voc.find(root)),
        ("csv", csv_solution.find(root)),
        ("wsol", metadata if metadata is not None else wsol.find(root, split if split in wsol.SPLITS else None)),
        ("cub", cub.find(root)),
    ):
        if where is not None:
            found[name] = where
    return found


def _not_a_root(path: Path) -> str:
    """Why ``path`` cannot be a data root: it does not exist, or it is a file."""
    return "does not exist" if not path.exists() else "is a file, not a directory"


def detect_layout(root: PathLike, *, split: str | None = None, metadata: PathLike | None = None) -> str:
    """Which GT layout is under ``root``. Raises :class:`DataError` if none is, or several are."""
    r = Path(root)
    if not r.is_dir():
        raise DataError([Problem("no-root", str(r), _not_a_root(r), "pass the dataset root folder")])
    found = _layouts_present(r, split, Path(metadata) if metadata is not None else None)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise DataError(
            [
                Problem(
                    "no-annotations",
                    str(r),
                    "no ground truth found: looked for VOC *.xml in "
                    + ", ".join(f"{v}/" for v in voc.VOC_DIRS)
                    + f"; {csv_solution.CSV_SOLUTION}; wsol metadata ({', '.join(wsol.WSOL_FILES)}) in metadata/[<NAME>/]<split>/,"
                    " metadata/ or the root; CUB's images.txt + bounding_boxes.txt",
                    "point root at the folder holding the annotations",
                )
            ]
        )
    listing = ", ".join(f"{k} ({v})" for k, v in found.items())
    raise DataError(
        [
            Problem(
                "ambiguous-layout",
                str(r),
                f"several GT layouts are present: {listing}",
                f"pass layout= one of {', '.join(sorted(found))} explicitly",
            )
        ]
    )


def _read_gt(
    root: Path,
    layout: str,
    classes: ClassesArg,
    problems: list[Problem],
    ann_ids: set[str],
    split: str | None = None,
    metadata: Path | None = None,
) -> tuple[GroundTruth | None, str]:
    """Parse GT (problems appended); ``ann_ids`` collects every image id the annotations name.
    Returns the GT and the split used ('' when the layout has none)."""
    if not root.is_dir():
        problems.append(Problem("no-root", str(root), _not_a_root(root), "pass the dataset root folder"))
        return None, ""
    if layout == "auto":
        try:
            layout = detect_layout(root, split=split, metadata=metadata)
        except DataError as exc:
            problems.extend(exc.problems)
            return None, ""
    if layout not in LAYOUTS:
        problems.append(
            Problem("bad-layout", str(root), f"unknown layout {layout!r}", f"use one of 'auto', {', '.join(map(repr, LAYOUTS))}")
        )
        return None, ""
    if split and layout in ("voc", "csv"):
        problems.append(Problem("bad-split", str(root), f"the {layout} layout has no splits (asked for {split!r})", "leave --split out"))
        return None, ""
    if split and layout == "wsol" and split not in wsol.SPLITS:
        problems.append(Problem("bad-split", str(root), f"unknown wsol split {split!r}", f"use one of {', '.join(wsol.SPLITS)}"))
        return None, ""
    n_before = len(problems)
    used_split = ""
    if layout == "voc":
        gt = voc.read(root, classes, problems, ann_ids)
    elif layout == "csv":
        gt = csv_solution.read(root, classes, problems, ann_ids)
    elif layout == "cub":
        gt, used_split = cub.read(root, classes, problems, ann_ids, split=split)
    else:
        gt, used_split, _ = wsol.read(root, classes, problems, ann_ids, split=split, metadata=metadata)
    if not ann_ids and len(problems) == n_before:
        problems.append(Problem("no-annotations", str(gt.source), "the annotations name no image", "point root at a non-empty annotation set"))
    return gt, used_split


def read_gt(root: PathLike, layout: str = "auto", *, classes: ClassesArg = None, split: str | None = None,
            metadata: PathLike | None = None) -> GroundTruth:
    """Parse the ground truth under ``root`` without looking at image files.

    Boxes are returned exactly as written (the size check and clipping happen in
    :func:`open_dataset`). Raises :class:`DataError` listing every problem.
    """
    problems: list[Problem] = []
    gt, _ = _read_gt(Path(root), layout, classes, problems, set(), split, Path(metadata) if metadata is not None else None)
    if problems or gt is None:
        raise DataError(problems, context=f"root {root}")
    return gt


def _absolute(p: PathLike | None) -> Path | None:
    if p is None:
        return None
    d = Path(p)
    return d if d.is_absolute() else Path.cwd() / d


def open_dataset(
    root: PathLike,
    layout: str = "auto",
    images: PathLike | None = None,
    split: str | None = None,
    *,
    blacklist: BlacklistArg = None,
    classes: ClassesArg = None,
    metadata: PathLike | None = None,
    masks: PathLike | None = None,
    images_required: bool = True,
) -> Dataset:
    """Load and validate the data set under ``root``.

    Args:
        root: dataset root holding the annotations (see :mod:`bench.data.readers` for layouts).
        layout: 'auto' (detect; error if several layouts are present) or one of :data:`LAYOUTS`.
        images: folder with the images (flat or ``<class>/`` sub-folders). Default: the first of
            ``root/val``, ``root/images``, ``root/ILSVRC/Data/CLS-LOC/val``, ``root`` holding images
            (layouts that name image paths also look under their own folders).
        split: ``test`` (default of split layouts), ``train-fullsup`` (wsol), ``train``/``all`` (CUB).
        blacklist: file (or iterable) of image ids / 1-based devkit indices.
        classes: class list (ids, or a ``LOC_synset_mapping.txt`` path); sorted before use.
        metadata: wsol metadata folder (default: found under the root).
        masks: folder the wsol mask paths are relative to (default: found under the root).

        images_required: False for scoring saved maps (`bench score`): an annotated image without a
            file is kept (``path`` = where its file would be; ``size`` from the annotation, if it
            states one) instead of being a ``missing-image`` problem, and no image folder is needed.

    Every annotated image needs a file (unless ``images_required`` is False); in layouts without
    splits, every image file also needs an annotation. All problems are collected and raised as one
    :class:`DataError`. Each image carries the size its annotation states (``GTImage.size``).
    """
    root_p = Path(root).absolute()
    images_arg, metadata_arg, masks_arg = _absolute(images), _absolute(metadata), _absolute(masks)
    problems: list[Problem] = []
    ann_ids: set[str] = set()
    gt, used_split = _read_gt(root_p, layout, classes, problems, ann_ids, split, metadata_arg)
    bl = parse_blacklist(blacklist, problems, root_p)
    if gt is None:
        raise DataError(problems, context=f"root {root_p}")
    img_dir = pick_images_dir(root_p, images_arg, problems)
    found: dict[str, str] = {}
    subdir: dict[str, str] = {}
    if img_dir is None:
        if images_arg is None and not gt.paths and images_required:
            problems.append(
                Problem("no-images-dir", str(root_p), "no image folder: tried " + ", ".join(IMAGE_DIRS), "pass images= pointing to the images")
            )
    else:
        found, subdir = scan_images(img_dir, problems)

    resolved = _resolve_named_paths(gt, found, root_p, img_dir)
    absent = _account_for_files(gt, ann_ids, resolved, found, root_p, img_dir, used_split, images_required, problems)
    out = _gt_images(gt, resolved, found, absent, subdir, _mask_bases(root_p, masks_arg, gt), problems)
    if gt.layout == "wsol" and gt.masks and not problems:
        out = _boxes_from_masks(out, gt, problems)
    out, clipped = fit_boxes_to_images(out, gt, problems)
    if problems:
        raise DataError(problems, context=f"root {root_p}")
    ids = {im.image_id for im in out}
    blacklist_path = Path(blacklist).absolute() if isinstance(blacklist, (str, os.PathLike)) else None
    return Dataset(
        images=tuple(out),
        class_ids=gt.class_ids,
        layout=gt.layout,
        root=root_p,
        blacklisted=frozenset(bl & ids),
        clipped_boxes=sum(clipped.values()),
        clipped_images=tuple(sorted(clipped)),
        class_names=gt.class_names or class_names_for(gt.class_ids, gt.class_file if gt.class_source == "file" else None),
        class_source=gt.class_source,
        class_file=gt.class_file,
        images_dir=images_arg,
        split=used_split,
        metadata_dir=metadata_arg,
        masks_dir=masks_arg,
        blacklist_path=blacklist_path,
        images_required=images_required,
    )


def _resolve_named_paths(gt: GroundTruth, found: dict[str, str], root: Path, img_dir: Path | None) -> dict[str, str]:
    """Layouts naming image paths: ``{image id: file}``, the path as written winning when it exists
    under one of the bases (the layout's own folders, the root, the image folder)."""
    resolved: dict[str, str] = {}
    if gt.paths:
        scanned = set(found.values())
        bases = [str(b) for b in gt.image_bases] + [str(root)] + ([str(img_dir)] if img_dir is not None else [])
        for image_id, rel in gt.paths.items():
            for base in bases:
                cand = os.path.join(base, rel)
                if cand in scanned or os.path.isfile(cand):
                    resolved[image_id] = cand
                    break
    return resolved


def _account_for_files(
    gt: GroundTruth, ann_ids: set[str], resolved: dict[str, str], found: dict[str, str], root_p: Path, img_dir: Path | None,
    used_split: str, images_required: bool, problems: list[Problem],
) -> dict[str, str]:
    """Every annotated image has a file and (without splits) every file an annotation, else a
    problem; with ``images_required`` False an image without a file is kept: returns
    ``{image id: where its file would be}`` for those."""
    src = gt.source
    where_imgs = str(img_dir) if img_dir is not None else str(root_p)
    absent: dict[str, str] = {}  # image_id -> where its file would be (images_required=False)
    for image_id in sorted(i for i in ann_ids if i not in resolved and i not in found):
        base = str(gt.image_bases[0]) if gt.image_bases else str(root_p)
        expected = os.path.join(base, gt.paths[image_id]) if image_id in gt.paths else os.path.join(where_imgs, image_id + ".JPEG")
        if not images_required:
            absent[image_id] = expected
            continue
        problems.append(
            Problem(
                "missing-image",
                expected,
                f"image {image_id} is annotated in {src} but no image file was found",
                "add the image (flat or in its class folder), or pass images= pointing to the images, or remove its annotation",
            )
        )
    if not used_split:  # a split's image folder also holds the other splits' images
        for image_id in sorted(set(found) - ann_ids):
            problems.append(
                Problem(
                    "unannotated-image",
                    found[image_id],
                    f"image file has no annotation in {src}",
                    "add its annotation, or move the file out of the image folder (or pass images=)",
                )
            )
    return absent


def _gt_images(
    gt: GroundTruth, resolved: dict[str, str], found: dict[str, str], absent: dict[str, str], subdir: dict[str, str],
    mask_bases: list[Path], problems: list[Problem],
) -> list[GTImage]:
    """The data set's images in id order: file, label, boxes, masks and the size the annotation
    states; an image in a WordNet-named folder of another class is a ``label-mismatch`` problem."""
    out: list[GTImage] = []
    for image_id in sorted(gt.records):
        label, boxes = gt.records[image_id]
        path = resolved.get(image_id) or found.get(image_id) or absent.get(image_id)
        if path is None:
            continue
        sub = "" if image_id in resolved else subdir.get(image_id, "")
        if WNID_RE.match(sub) and sub != gt.class_ids[label]:
            problems.append(
                Problem(
                    "label-mismatch",
                    path,
                    f"image is in class folder {sub} but annotated as {gt.class_ids[label]} (class {label})",
                    "move the image to its class folder or fix the annotation",
                )
            )
        mask_paths: tuple[Path, ...] = ()
        ignore: Path | None = None
        if image_id in gt.masks:
            rels, ign = gt.masks[image_id]
            mask_paths = tuple(_find_file(mask_bases, r, problems, image_id) for r in rels)
            ignore = _find_file(mask_bases, ign, problems, image_id) if ign else None
        out.append(GTImage(image_id, Path(path), label, boxes, mask_paths, ignore, gt.sizes.get(image_id)))
    return out


def _mask_bases(root: Path, masks: Path | None, gt: GroundTruth) -> list[Path]:
    names = [b.name for b in gt.image_bases if b.parent.name == "dataset"] or ["OpenImages"]
    bases: list[Path] = []
    for d in ([masks] if masks is not None else []) + [root / "masks", root / "dataset"]:
        bases.append(d)
        bases += [d / n for n in names]
    bases += [root]
    if gt.source.is_dir():
        bases.append(gt.source)
    return bases


def _find_file(bases: list[Path], rel: str, problems: list[Problem], image_id: str) -> Path:
    for base in bases:
        cand = base / rel
        if cand.is_file():
            return cand
    problems.append(
        Problem("missing-mask", str(bases[0] / rel), f"mask of image {image_id} not found under {', '.join(map(str, bases[:3]))}, ...",
                "pass --masks DIR, the folder the mask paths are relative to")
    )
    return bases[0] / rel


def load_mask(path: Path) -> np.ndarray:
    """A mask file as wsolevaluation reads it: grey levels (0..255), float32 ``(H, W)``."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.float32)


def _mask_boxes(image: GTImage) -> tuple[np.ndarray | str, tuple[int, int] | None]:
    """Instance boxes (inclusive, image pixels) of one image's masks, or an error text."""
    size = image_header_size(image.path)
    boxes = []
    try:
        for p in image.masks:
            m = load_mask(p) > 0.5
            ys, xs = np.nonzero(m)
            if len(xs) == 0:
                continue
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            mh, mw = m.shape
            if size is not None and (mw, mh) != size:  # mask at another resolution: scale its pixel extent
                w, h = size
                x0, x1 = int(np.floor(x0 * w / mw)), int(np.ceil((x1 + 1) * w / mw)) - 1
                y0, y1 = int(np.floor(y0 * h / mh)), int(np.ceil((y1 + 1) * h / mh)) - 1
            boxes.append([int(x0), int(y0), int(x1), int(y1)])
    except Exception as exc:  # noqa: BLE001 - any unreadable mask is reported with its file
        return f"cannot read mask ({exc})", size
    if not boxes:
        return "no instance mask has a foreground pixel (> 0.5)", size
    return np.asarray(boxes, dtype=np.int64), size


def _boxes_from_masks(images: list[GTImage], gt: GroundTruth, problems: list[Problem]) -> list[GTImage]:
    """Mask data sets: each instance mask's bounding box becomes a GT box (for the box rules)."""
    from dataclasses import replace

    todo = [im for im in images if im.masks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip((im.image_id for im in todo), pool.map(_mask_boxes, todo)))
    out = []
    for im in images:
        if im.image_id not in results:
            out.append(im)
            continue
        boxes, _ = results[im.image_id]
        if isinstance(boxes, str):
            problems.append(Problem("bad-mask", f"{gt.source} ({im.image_id})", boxes, "fix or remove this image's masks"))
            continue
        out.append(replace(im, boxes=readonly(boxes)))
    return out


def reopen(description: Mapping[str, Any], root: PathLike | None = None) -> Dataset:
    """The data set of ``description`` (:meth:`Dataset.describe`), from ``root`` when it moved.

    Relative paths of the description are taken under the (new) root. The caller compares
    ``fingerprint()`` with the recorded one (a moved data set must hold the same GT).
    """
    base = Path(root) if root is not None else Path(description["root"])

    def under(p: str | None) -> Path | None:
        if p is None:
            return None
        q = Path(p)
        return q if q.is_absolute() else base / q

    cls = description.get("classes", {}) or {}
    classes: ClassesArg = None
    if cls.get("source") == "list":
        classes = list(cls["ids"])
    elif cls.get("source") == "file" and cls.get("file"):
        classes = under(cls["file"])
    return open_dataset(
        base,
        layout=description.get("layout", "auto"),
        images=under(description.get("images")),
        split=description.get("split") or None,
        blacklist=under(description.get("blacklist")),
        classes=classes,
        metadata=under(description.get("metadata")),
        masks=under(description.get("masks")),
        images_required=bool(description.get("images_required", True)),
    )
