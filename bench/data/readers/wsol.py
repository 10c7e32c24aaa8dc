"""wsolevaluation's metadata layout (Choe et al., CVPR 2020), for ILSVRC, CUB and OpenImages.

Files (one folder): ``image_ids.txt`` (image paths), ``class_labels.txt`` (``path,label``, the label
an integer class index), ``image_sizes.txt`` (optional, ``path,w,h``) and ``localization.txt``:

* boxes (ILSVRC, CUB): ``path,x0,y0,x1,y1``, one line per box, integers;
* masks (OpenImages): ``path,mask_path,ignore_path``, one line per instance mask; the ignore path
  is on the image's first line only, and an EMPTY ignore field means "no ignore region" (the
  reference loader crashes on it, wsolevaluation#33; here it is simply no region).

Where the folder is: ``metadata=`` if given, else the first of ``root/metadata/<split>``,
``root/metadata/<NAME>/<split>`` (wsolevaluation's ``metadata/CUB/test``; one NAME only),
``root/metadata``, ``root``. Splits: ``test`` (the default) and ``train-fullsup`` (the folder
``val``, wsolevaluation's name for it); flat metadata without split folders has no split.
Image paths are tried under ``root``, the images folder, ``root/dataset/<NAME>`` and
``root/images``; mask paths under ``masks=``, ``root/masks``, ``root/dataset/<NAME>`` (each also
with ``/<NAME>``, as wsolevaluation's ``mask_root/OpenImages``) and ``root``.

Class list: ``classes=``, else ``root/LOC_synset_mapping.txt``, else — when every label's images
lie in one folder of their own that is not a WordNet id (CUB's ``001.Black_footed_Albatross/``,
OpenImages' ``test/01226z/``) — those folder names by label, else ImageNet's 1000 WNIDs. When the
folders are WordNet ids mapping one-to-one onto labels 0..K-1 (an ImageNet subset labelled in its
own order), the folders are the class ids: ImageNet WNIDs keep the 1000-class list and each image
gets its folder's index there; other WNIDs become the class list in label order. Folders that
contradict the labels (one folder with two labels, or the reverse) are ``label-mismatch`` problems.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.classes import WNID_RE
from bench.data.dataset import (
    CSV_SYNSETS,
    ClassesArg,
    GroundTruth,
    Problem,
    Records,
    any_bad_box,
    check_boxes,
    parse_int,
    read_table,
    resolve_classes,
    split_boxes,
    strip_image_ext,
)

__all__ = ["WSOL_FILES", "WSOL_SIZES", "SPLITS", "find", "find_all", "read"]

WSOL_FILES: tuple[str, ...] = ("image_ids.txt", "class_labels.txt", "localization.txt")
WSOL_SIZES = "image_sizes.txt"
#: split name -> wsolevaluation's folder name
SPLITS: dict[str, str] = {"test": "test", "train-fullsup": "val"}


def _is_meta(d: Path) -> bool:
    return d.is_dir() and any((d / f).is_file() for f in WSOL_FILES)


def find_all(root: Path, split: str | None = None) -> list[tuple[Path, str, str]]:
    """Candidate metadata folders ``(folder, split, dataset name)``; the first is used."""
    out: list[tuple[Path, str, str]] = []
    splits = [split] if split else list(SPLITS)
    meta = root / "metadata"
    for s in splits:
        folder = SPLITS.get(s, s)
        if _is_meta(meta / folder):
            out.append((meta / folder, s, ""))
        if meta.is_dir():
            for sub in sorted(p for p in meta.iterdir() if p.is_dir()):
                if _is_meta(sub / folder):
                    out.append((sub / folder, s, sub.name))
    if not out:
        for d in (meta, root):
            if _is_meta(d):
                out.append((d, "", ""))
                break
    return out


def find(root: Path, split: str | None = None) -> Path | None:
    """The metadata folder under ``root`` (for ``split``), or None."""
    found = find_all(root, split)
    return found[0][0] if found else None


def read(
    root: Path,
    classes: ClassesArg,
    problems: list[Problem],
    ann_ids: set[str],
    *,
    split: str | None = None,
    metadata: Path | None = None,
) -> tuple[GroundTruth, str, str]:
    """Parse the metadata; returns ``(gt, split, dataset name)`` (problems appended)."""
    name = ""
    if metadata is not None:
        meta: Path | None = metadata
        used_split = split or ""
        if not _is_meta(metadata):
            problems.append(
                Problem("no-annotations", str(metadata), f"holds none of {', '.join(WSOL_FILES)}", "pass --metadata DIR holding them")
            )
            meta = None
    else:
        found = find_all(root, split)
        meta, used_split, name = found[0] if found else (None, split or "", "")
        names = {n for _, s, n in found if s == used_split}
        if len(names) > 1:
            problems.append(
                Problem(
                    "ambiguous-layout",
                    str(root / "metadata"),
                    f"metadata for several data sets: {sorted(names)}",
                    "pass --metadata DIR naming one of them",
                )
            )
        if meta is None:
            where = f"metadata/{SPLITS.get(split, split)}/, metadata/<NAME>/{SPLITS.get(split, split)}/" if split else "metadata/ or the root"
            problems.append(
                Problem(
                    "no-annotations",
                    str(root),
                    f"no wsol metadata ({', '.join(WSOL_FILES)}) in {where}",
                    "put the metadata files in root/metadata/<split>/ or pass --metadata DIR",
                )
            )
    if meta is None:
        cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
        return GroundTruth("wsol", cls, {}, root, class_source=source, class_file=file), used_split, name
    gt = _read_wsol(root, meta, classes, problems, ann_ids)
    if name:
        bases = (root / "dataset" / name,)
        gt = GroundTruth(**{**gt.__dict__, "image_bases": bases + gt.image_bases})
    return gt, used_split, name


def _folder_classes(order: list[str], label_of: np.ndarray, *, wnids: bool = False) -> tuple[str, ...] | None:
    """Class ids from the images' parent folders when they name the classes one-to-one (labels
    0..K-1, one folder per label and one label per folder), else None. ``wnids`` False: folders
    that are not WordNet ids (CUB, OpenImages); True: folders that all are WordNet ids."""
    seen = label_of >= 0
    if not seen.any():
        return None
    parents = [os.path.basename(os.path.dirname(order[i])) for i in np.flatnonzero(seen)]
    labels = label_of[seen].tolist()
    by_label: dict[int, set[str]] = defaultdict(set)
    by_parent: dict[str, set[int]] = defaultdict(set)
    for lab, par in zip(labels, parents):
        by_label[lab].add(par)
        by_parent[par].add(lab)
    k = max(labels) + 1
    if sorted(by_label) != list(range(k)) or any(len(v) != 1 for v in by_label.values()):
        return None
    if any(len(v) != 1 for v in by_parent.values()) or any(not p or bool(WNID_RE.match(p)) != wnids for p in by_parent):
        return None
    return tuple(next(iter(by_label[i])) for i in range(k))


def _read_wsol(root: Path, meta: Path, classes: ClassesArg, problems: list[Problem], ann_ids: set[str]) -> GroundTruth:
    missing = [f for f in WSOL_FILES if not (meta / f).is_file()]
    for f in missing:
        problems.append(
            Problem("missing-file", str(meta / f), "required wsol metadata file is missing", f"provide {f} next to the other metadata files")
        )
    if missing:
        cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
        return GroundTruth("wsol", cls, {}, meta, class_source=source, class_file=file)
    ids_file, labels_file, loc_file = (meta / f for f in WSOL_FILES)

    # image_ids.txt
    try:
        paths = [s for s in (raw.strip() for raw in ids_file.read_text(encoding="utf-8").splitlines()) if s]
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("unreadable", str(ids_file), f"cannot read ({exc})", "fix the file"))
        cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
        return GroundTruth("wsol", cls, {}, meta, class_source=source, class_file=file)
    for p in sorted(p for p, c in Counter(paths).items() if c > 1):
        problems.append(Problem("duplicate-id", str(ids_file), f"path {p} is listed more than once", "list each image once"))
    order = list(dict.fromkeys(paths))
    path_index = {p: i for i, p in enumerate(order)}
    stems = [strip_image_ext(os.path.basename(p)) for p in order]
    stem_paths: dict[str, list[str]] = defaultdict(list)
    for p, s in zip(order, stems):
        stem_paths[s].append(p)
    for s, ps in stem_paths.items():
        if len(ps) > 1:
            problems.append(
                Problem("duplicate-id", str(ids_file), f"image id {s} is named by several paths {ps}", "keep one file per image id")
            )
    ann_ids.update(stems)
    n_img = len(order)

    # class_labels.txt: integers first; the class list is decided once all labels are known
    label_of = np.full(n_img, -1, dtype=np.int64)
    rows, lines = read_table(labels_file, 2, problems, "path,label")
    seen_label: dict[str, int] = {}
    raw_labels: list[tuple[int, str, str, int]] = []  # (image index, label text, where, value or -1)
    for (p, lab), ln in zip(rows, lines):
        where = f"{labels_file}:{ln}"
        if p not in path_index:
            problems.append(
                Problem("unknown-image", where, f"{p} is not listed in {ids_file.name}", f"add it to {ids_file.name} or remove this line")
            )
            continue
        if p in seen_label:
            problems.append(Problem("duplicate-id", where, f"{p} already has a label on line {seen_label[p]}", "give each image one label"))
            continue
        seen_label[p] = ln
        v = parse_int(lab)
        raw_labels.append((path_index[p], lab, where, -1 if v is None else v))
        if v is not None and v >= 0:
            label_of[path_index[p]] = v
    no_list = classes is None and not (root / CSV_SYNSETS).is_file()
    folder = _folder_classes(order, label_of) if no_list else None
    wnid_folders = _folder_classes(order, label_of, wnids=True) if no_list and folder is None else None
    relabel: dict[int, int] = {}
    if folder is not None:
        cls, source, file = folder, "wsol-folders", None
    else:
        cls, source, file = resolve_classes(classes, root / CSV_SYNSETS, problems)
    if wnid_folders is not None:
        # WordNet-named folders, one per label 0..K-1 (an ImageNet subset whose labels are in another
        # order): the folders are the class ids. ImageNet WNIDs keep ImageNet's class list, each
        # label becoming its folder's index there (so an ImageNet model maps to them by WNID);
        # other WNIDs (e.g. generated data) are the class list themselves, in label order.
        index = {w: i for i, w in enumerate(cls)}
        if source == "imagenet-1k" and all(w in index for w in wnid_folders):
            relabel = {lab: index[w] for lab, w in enumerate(wnid_folders)}
        else:
            cls, source, file = wnid_folders, "wsol-folders", None
    for i, lab, where, v in raw_labels:
        if not 0 <= v < len(cls):
            label_of[i] = -1
            problems.append(
                Problem(
                    "bad-label",
                    where,
                    f"label {lab!r} is not a class index in [0, {len(cls) - 1}]",
                    "labels are indices into the class list (sorted WNIDs for ILSVRC: 0 = n01440764)",
                )
            )
            continue
        if relabel:
            v = label_of[i] = relabel[v]
        parent = os.path.basename(os.path.dirname(order[i]))
        if WNID_RE.match(parent) and parent != cls[v]:
            label_of[i] = -1
            problems.append(
                Problem("label-mismatch", where, f"{order[i]} is in class folder {parent} but labelled {v} ({cls[v]})", "fix the label or move the image")
            )
    for i in np.flatnonzero(label_of < 0):
        if order[i] not in seen_label:
            problems.append(Problem("no-label", str(labels_file), f"{order[i]} has no class label", f"add a line '{order[i]},<label>'"))

    # image_sizes.txt (optional): sizes of the listed images, used to check and clip boxes
    sizes: dict[str, tuple[int, int]] = {}
    sizes_file = meta / WSOL_SIZES
    if sizes_file.is_file():
        srows, slines = read_table(sizes_file, 3, problems, "path,width,height")
        for (p, w, h), ln in zip(srows, slines):
            wi, hi = parse_int(w), parse_int(h)
            if wi is None or hi is None or wi <= 0 or hi <= 0:
                problems.append(Problem("bad-size", f"{sizes_file}:{ln}", f"size {w},{h} is not two positive integers", "write 'path,width,height'"))
            elif p in path_index:
                sizes[stems[path_index[p]]] = (wi, hi)

    common = dict(class_source=source, class_file=file, sizes=sizes, paths={stems[i]: order[i] for i in range(n_img)})
    if _mask_format(loc_file):
        masks = _read_masks(loc_file, ids_file.name, path_index, order, problems)
        records = {stems[i]: (int(label_of[i]), np.zeros((0, 4), dtype=np.int64)) for i in masks if label_of[i] >= 0}
        return GroundTruth("wsol", cls, records, meta, masks={stems[i]: m for i, m in masks.items()}, **common)

    # localization.txt: boxes
    brows, blines = read_table(loc_file, 5, problems, "path,x0,y0,x1,y1")
    img_of_box = np.array([path_index.get(r[0], -1) for r in brows], dtype=np.int64)
    for j in np.flatnonzero(img_of_box < 0):
        problems.append(
            Problem("unknown-image", f"{loc_file}:{blines[j]}", f"{brows[j][0]} is not listed in {ids_file.name}", f"add it to {ids_file.name} or remove this line")
        )
    coords = np.array([r[1:] for r in brows], dtype=object).reshape(-1, 4)
    vals = pd.to_numeric(pd.Series(coords.ravel()), errors="coerce").to_numpy(dtype=np.float64).reshape(-1, 4)
    nonint = ~np.isfinite(vals) | (vals != np.round(vals))
    for j in np.flatnonzero(nonint.any(axis=1)):
        problems.append(Problem("bad-box", f"{loc_file}:{blines[j]}", f"box {list(coords[j])} has a non-integer coordinate", "write integer pixel coordinates"))
    boxes = np.where(nonint, 0, vals).astype(np.int64)
    check_boxes(boxes, [f"{loc_file}:{ln}" for ln in blines] if any_bad_box(boxes) else [], problems)

    valid = (img_of_box >= 0) & ~nonint.any(axis=1)
    counts = np.bincount(img_of_box[valid], minlength=n_img)
    mentioned = set(img_of_box.tolist())
    for i in np.flatnonzero(counts == 0):
        if i not in mentioned:  # images whose boxes were all invalid are already reported
            problems.append(Problem("no-boxes", str(loc_file), f"{order[i]} has no box", "every validation image needs at least one box"))
    sel = np.flatnonzero(valid)
    sel = sel[np.argsort(img_of_box[sel], kind="stable")]  # group by image, keep file order
    chunks = split_boxes(boxes[sel], counts)
    records: Records = {
        stems[i]: (int(label_of[i]), chunks[i]) for i in range(n_img) if counts[i] > 0 and label_of[i] >= 0
    }
    return GroundTruth("wsol", cls, records, meta, **common)


def _mask_format(loc_file: Path) -> bool:
    """True when localization.txt holds masks (3 fields per line) rather than boxes (5)."""
    try:
        with loc_file.open(encoding="utf-8") as fh:
            for raw in fh:
                if raw.strip():
                    return raw.strip().count(",") == 2
    except (OSError, UnicodeDecodeError):
        return False
    return False


def _read_masks(
    loc_file: Path, ids_name: str, path_index: dict[str, int], order: list[str], problems: list[Problem]
) -> dict[int, tuple[tuple[str, ...], str]]:
    """``path,mask_path,ignore_path`` lines -> {image index: (mask paths, ignore path or '')}."""
    rows, lines = read_table(loc_file, 3, problems, "path,mask_path,ignore_path")
    masks: dict[int, list[str]] = {}
    ignore: dict[int, str] = {}
    for (p, mask, ign), ln in zip(rows, lines):
        where = f"{loc_file}:{ln}"
        i = path_index.get(p)
        if i is None:
            problems.append(Problem("unknown-image", where, f"{p} is not listed in {ids_name}", f"add it to {ids_name} or remove this line"))
            continue
        if not mask:
            problems.append(Problem("bad-line", where, "empty mask path", "write 'path,mask_path,ignore_path'"))
            continue
        if i in masks:
            if ign:
                problems.append(
                    Problem("bad-line", where, f"a second ignore path for {p} (only its first line may name one)", "leave the ignore field empty after the first line")
                )
            masks[i].append(mask)
        else:
            masks[i] = [mask]
            ignore[i] = ign
    for i in range(len(order)):
        if i not in masks:
            problems.append(Problem("no-boxes", str(loc_file), f"{order[i]} has no mask", "every evaluated image needs at least one instance mask"))
    return {i: (tuple(m), ignore[i]) for i, m in masks.items()}
