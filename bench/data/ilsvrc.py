"""Readers for the ILSVRC-2012 validation ground truth in its three on-disk layouts.

Conventions (DESIGN §3):

* Boxes are ``xyxy``, **0-based, inclusive** pixel indices, never shifted. A box is valid when
  ``0 <= xmin <= xmax`` and ``0 <= ymin <= ymax`` (otherwise: an error). :func:`read_gt` keeps
  them exactly as written. :func:`load_val` also checks them against the image size (W, H) when
  it is known — from the annotation (VOC ``<size>``, wsol ``image_sizes.txt``), else from the
  image file's header (read lazily, no pixels decoded): a box lying entirely outside the image
  (``xmin > W-1`` or ``ymin > H-1``) is an error; a box overhanging the right/bottom edge is
  **clipped** to ``xmax = W-1`` / ``ymax = H-1`` and counted in :attr:`ValSet.clipped_boxes`
  (official ILSVRC boxes include a few with ``xmax = W``, one past the last pixel). When the size
  cannot be known (the image header is unreadable: that image will be a ``failed`` record), the
  boxes are kept as written.
* Class index = position of the WNID in the **sorted** class list (torchvision order).
  The devkit's ILSVRC2012_ID order is never used.
* Every box of an image has the image's class.
* Class list: ``wnids=`` if given, else ``root/LOC_synset_mapping.txt`` if the root has one (any
  layout), else the shipped 1000-class list.

Layouts:

``voc``
    One PASCAL VOC XML file per image (``<object><name>WNID</name><bndbox><xmin>...``), in the
    first of ``root/Annotations/CLS-LOC/val``, ``root/annotations``, ``root/bbox_val``,
    ``root/val`` holding ``*.xml`` files (flat or one level of sub-folders).
``csv``
    ``root/LOC_val_solution.csv`` (``ImageId,PredictionString``, the string being repeated
    ``WNID xmin ymin xmax ymax``; rows in any order) and ``root/LOC_synset_mapping.txt``.
``wsol``
    wsolevaluation metadata in ``root/metadata/`` or ``root``: ``image_ids.txt``,
    ``class_labels.txt`` (``path,label``), ``image_sizes.txt`` (optional, ``path,w,h``),
    ``localization.txt`` (``path,x0,y0,x1,y1``, one line per box).

Errors are collected, never fail-fast: :class:`DataError` carries every problem found, each
naming the file (with the line where there is one), what is wrong and how to fix it.

Image files: every directory entry of the image folder (or of a class sub-folder) whose name ends
in an image extension is an image, whatever it turns out to be (a directory named ``x.JPEG``, a
broken symlink, a FIFO): such entries are not "missing", they become ``failed`` records with the
reason when the run decodes them (:mod:`bench.data.transforms`).

A blacklist path that lies inside the data root must also *resolve* inside it: a symlink pointing
out of the root is refused before it is read (protocol files name their blacklist relative to the
data root; :mod:`bench.core.protocol` already rejects absolute and ``..`` paths).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import warnings
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import pandas as pd

from bench.data.classes import WNID_RE, load_wnids, read_synset_mapping

__all__ = [
    "LAYOUTS",
    "IMAGE_EXTENSIONS",
    "Problem",
    "DataError",
    "GTImage",
    "ValSet",
    "GroundTruth",
    "detect_layout",
    "read_gt",
    "read_blacklist",
    "load_val",
    "devkit_index_to_image_id",
]

LAYOUTS: tuple[str, ...] = ("voc", "csv", "wsol")
#: Image file extensions recognised (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpeg", ".jpg", ".png", ".gif", ".bmp")

VOC_DIRS: tuple[str, ...] = ("Annotations/CLS-LOC/val", "annotations", "bbox_val", "val")
IMAGE_DIRS: tuple[str, ...] = ("val", "images", "ILSVRC/Data/CLS-LOC/val", ".")
WSOL_DIRS: tuple[str, ...] = ("metadata", ".")
CSV_SOLUTION = "LOC_val_solution.csv"
CSV_SYNSETS = "LOC_synset_mapping.txt"
WSOL_FILES: tuple[str, ...] = ("image_ids.txt", "class_labels.txt", "localization.txt")
WSOL_SIZES = "image_sizes.txt"

PathLike = Union[str, "os.PathLike[str]"]
WnidsArg = Union[None, PathLike, Sequence[str]]
BlacklistArg = Union[None, PathLike, Iterable[Union[str, int]]]
Records = dict[str, tuple[int, np.ndarray]]  # image_id -> (label, (n,4) int64 boxes)

_BOX_FIX = (
    "boxes are 0-based inclusive xyxy and need 0 <= xmin <= xmax and 0 <= ymin <= ymax; "
    "correct or remove this box"
)
_WNIDS_FIX = (
    "use WNIDs of the 1000-class ImageNet list, or pass wnids= (a list of WNIDs or a "
    "LOC_synset_mapping.txt path) that contains it"
)
_DEVKIT_ID_RE = re.compile(r"^\d+$")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One problem found in the data: where, what, and how to fix it."""

    kind: str  # short machine-readable category, e.g. "missing-image"
    file: str  # file (or folder) concerned; may include ':line' or an image id
    what: str  # what is wrong
    fix: str  # how to fix it

    def __str__(self) -> str:
        return f"[{self.kind}] {self.file}: {self.what}. Fix: {self.fix}."


class DataError(ValueError):
    """Invalid or inconsistent ILSVRC validation data.

    ``problems`` holds **every** problem found (not only the first). The message lists them
    all, one per line; only when there are more than :attr:`MAX_LINES` (e.g. a wrong image
    folder producing 50,000 'missing image' lines) are the rest summarised by kind — they are
    still all in ``problems``.
    """

    MAX_LINES = 200

    def __init__(self, problems: Iterable[Problem], *, context: str = "") -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._format(context))

    def _format(self, context: str) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} found in ILSVRC validation data"
        head += f" ({context})" if context else ""
        lines = [head + ":"]
        lines += [f"  - {p}" for p in self.problems[: self.MAX_LINES]]
        if n > self.MAX_LINES:
            rest = Counter(p.kind for p in self.problems[self.MAX_LINES :])
            kinds = ", ".join(f"{k}: {c:,}" for k, c in sorted(rest.items()))
            lines.append(
                f"  ... and {n - self.MAX_LINES:,} more problems not shown ({kinds}); "
                "all are in DataError.problems"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class GTImage:
    """Ground truth of one validation image.

    ``boxes`` is a read-only ``(n, 4)`` int64 array, ``n >= 1``, xyxy 0-based inclusive,
    in annotation-file order.
    """

    image_id: str  # file stem, e.g. 'ILSVRC2012_val_00000001'
    path: Path  # absolute path of the image file
    label: int  # class index in sorted-WNID order
    boxes: np.ndarray  # (n, 4) int64 xyxy inclusive 0-based

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GTImage):
            return NotImplemented
        return (
            self.image_id == other.image_id
            and self.path == other.path
            and self.label == other.label
            and np.array_equal(self.boxes, other.boxes)
        )

    def __hash__(self) -> int:
        return hash((self.image_id, self.path, self.label, self.boxes.tobytes()))


@dataclass(frozen=True)
class ValSet:
    """A loaded, validated validation set."""

    images: tuple[GTImage, ...]  # sorted by image_id
    wnids: tuple[str, ...]  # class list, sorted; label i <-> wnids[i]
    layout: str  # 'voc' | 'csv' | 'wsol'
    root: Path
    blacklisted: frozenset[str]  # image ids on the blacklist (still in images)
    #: GT boxes clipped to the image (xmax > W-1 or ymax > H-1 as written), and their images.
    clipped_boxes: int = 0
    clipped_images: tuple[str, ...] = ()
    images_dir: Path | None = None  # the folder the images were found in (recorded in run manifests)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        """Total number of GT boxes."""
        return int(sum(len(im.boxes) for im in self.images))

    def get(self, image_id: str) -> GTImage:
        """The record of ``image_id`` (KeyError if absent)."""
        lookup = self.__dict__.get("_by_id")
        if lookup is None:
            lookup = {im.image_id: im for im in self.images}
            object.__setattr__(self, "_by_id", lookup)
        return lookup[image_id]

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the GT content.

        Covers the class list, image ids, labels, boxes (in order) and the blacklist; it is
        independent of the layout the data was read from and of file paths.
        """
        return gt_fingerprint(
            self.wnids,
            [im.image_id for im in self.images],
            [im.label for im in self.images],
            [im.boxes for im in self.images],
            self.blacklisted,
        )


def gt_fingerprint(
    wnids: Sequence[str],
    image_ids: Sequence[str],
    labels: Sequence[int],
    boxes: Sequence[np.ndarray],
    blacklisted: Iterable[str] = (),
) -> str:
    """SHA-256 of GT content in a canonical byte form (see :meth:`ValSet.fingerprint`).

    ``image_ids`` must be sorted (as in :class:`ValSet`); ``labels``/``boxes`` align with it.
    """
    h = hashlib.sha256()

    def section(tag: str, payload: bytes) -> None:
        h.update(f"{tag}:{len(payload)}:".encode())
        h.update(payload)

    section("wsol-bench-gt", b"v1")
    section("wnids", "\n".join(wnids).encode())
    section("ids", "\n".join(image_ids).encode())
    section("labels", np.asarray(labels, dtype="<i8").tobytes())
    section("counts", np.asarray([len(b) for b in boxes], dtype="<i8").tobytes())
    flat = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes]) if boxes else np.empty((0, 4))
    section("boxes", flat.astype("<i8").tobytes())
    section("blacklist", "\n".join(sorted(blacklisted)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class GroundTruth:
    """Parsed GT before images are matched (see :func:`read_gt`)."""

    layout: str
    wnids: tuple[str, ...]  # sorted class list
    records: dict[str, tuple[int, np.ndarray]]  # image_id -> (label, (n,4) int64 boxes)
    source: Path  # annotation folder or file that was read
    paths: dict[str, str] = field(default_factory=dict)  # wsol: image_id -> path as written
    #: image_id -> (width, height) stated by the annotation (VOC <size>, wsol image_sizes.txt)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for _, b in self.records.values()))


# --------------------------------------------------------------------------- helpers


def _strip_image_ext(name: str) -> str:
    """'x.JPEG' -> 'x'; names without a known image extension are returned unchanged."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


def _has_file(folder: Path, suffix: str, *, subfolders: bool) -> bool:
    """True if ``folder`` (or, if ``subfolders``, one of its sub-folders) holds a ``*suffix`` file."""
    try:
        with os.scandir(folder) as it:
            dirs = []
            for e in it:
                if e.name.lower().endswith(suffix) and e.is_file():
                    return True
                if subfolders and e.is_dir():
                    dirs.append(e.path)
    except OSError:
        return False
    return any(_has_file(Path(d), suffix, subfolders=False) for d in dirs)


def _has_images(folder: Path) -> bool:
    return any(_has_file(folder, ext, subfolders=True) for ext in IMAGE_EXTENSIONS)


def _find_voc_dir(root: Path) -> Path | None:
    for rel in VOC_DIRS:
        d = root / rel
        if d.is_dir() and _has_file(d, ".xml", subfolders=True):
            return d
    return None


def _find_wsol_dir(root: Path) -> Path | None:
    for rel in WSOL_DIRS:
        d = root / rel
        if d.is_dir() and any((d / f).is_file() for f in WSOL_FILES):
            return d
    return None


def _layouts_present(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    voc = _find_voc_dir(root)
    if voc is not None:
        found["voc"] = voc
    if (root / CSV_SOLUTION).is_file():
        found["csv"] = root / CSV_SOLUTION
    wsol = _find_wsol_dir(root)
    if wsol is not None:
        found["wsol"] = wsol
    return found


def detect_layout(root: PathLike) -> str:
    """Which GT layout ('voc', 'csv' or 'wsol') is under ``root``.

    Raises :class:`DataError` if none is found, or if several are (then pass ``layout=``).
    """
    r = Path(root)
    if not r.is_dir():
        raise DataError([Problem("no-root", str(r), "is not a directory", "pass the dataset root folder")])
    found = _layouts_present(r)
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise DataError(
            [
                Problem(
                    "no-annotations",
                    str(r),
                    "no ground truth found: looked for VOC *.xml in "
                    + ", ".join(f"{v}/" for v in VOC_DIRS)
                    + f"; {CSV_SOLUTION}; wsol metadata ({', '.join(WSOL_FILES)}) in metadata/ or the root",
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


def _resolve_wnids(wnids: WnidsArg, default_file: Path | None, problems: list[Problem]) -> tuple[str, ...]:
    """Sorted class list from ``wnids`` (sequence or synset-file path), else ``default_file``
    if it exists, else the shipped 1000-class list."""
    try:
        if wnids is None:
            if default_file is not None and default_file.is_file():
                return tuple(read_synset_mapping(default_file))
            return tuple(load_wnids())
        if isinstance(wnids, (str, os.PathLike)):
            return tuple(read_synset_mapping(wnids))
        lst = [str(w).strip() for w in wnids]
    except (OSError, ValueError) as exc:
        problems.append(
            Problem(
                "class-list",
                str(wnids if wnids is not None else default_file),
                str(exc),
                "fix the class list file",
            )
        )
        return tuple(load_wnids())
    bad = [w for w in lst if not WNID_RE.match(w)]
    dups = sorted(w for w, c in Counter(lst).items() if c > 1)
    if bad:
        problems.append(
            Problem("class-list", "wnids=", f"not WordNet ids: {bad}", "give WNIDs like 'n01440764'")
        )
    if dups:
        problems.append(Problem("class-list", "wnids=", f"duplicated WNIDs: {dups}", "list each WNID once"))
    if not lst:
        problems.append(Problem("class-list", "wnids=", "empty class list", "give at least one WNID"))
        return tuple(load_wnids())
    return tuple(sorted(set(lst)))


def _parse_int(text: str | None) -> int | None:
    """Integer value of an annotation coordinate ('12' or integral '12.0'), else None."""
    if text is None:
        return None
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        try:
            v = float(s)
        except ValueError:
            return None
        return int(v) if v.is_integer() else None


def _check_boxes(boxes: np.ndarray, where: Sequence[str], problems: list[Problem]) -> None:
    """Append a problem for every box violating 0 <= xmin <= xmax, 0 <= ymin <= ymax."""
    if len(boxes) == 0:
        return
    x0, y0, x1, y1 = boxes.T
    bad = np.flatnonzero((x0 < 0) | (y0 < 0) | (x0 > x1) | (y0 > y1))
    for i in bad:
        b = boxes[i]
        why = []
        if b[0] < 0 or b[1] < 0:
            why.append("negative coordinate")
        if b[0] > b[2]:
            why.append("xmin > xmax")
        if b[1] > b[3]:
            why.append("ymin > ymax")
        problems.append(
            Problem("bad-box", where[i], f"box {[int(v) for v in b]} is invalid ({', '.join(why)})", _BOX_FIX)
        )


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _split_boxes(boxes: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Split a (N,4) array into consecutive read-only chunks of the given sizes."""
    boxes = _readonly(np.ascontiguousarray(boxes, dtype=np.int64))
    return np.split(boxes, np.cumsum(counts)[:-1]) if len(counts) else []


# --------------------------------------------------------------------------- VOC


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
    vals = [_parse_int(t) for t in texts]
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
        if fname is not None and fname.strip() and _strip_image_ext(fname.strip()) != image_id:
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
                _parse_int(bb.findtext(t)) if bb is not None else None
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
            problems.append(Problem("unknown-wnid", str(f), f"unknown WNID {n!r}", _WNIDS_FIX))
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
    _check_boxes(np.asarray(all_boxes, dtype=np.int64).reshape(-1, 4), where, problems)
    for k, (lab, b) in records.items():
        records[k] = (lab, _readonly(b))
    return records


# --------------------------------------------------------------------------- CSV


def _read_csv(path: Path, wnids: tuple[str, ...], problems: list[Problem], ann_ids: set[str]) -> Records:
    """Parse ``LOC_val_solution.csv`` (vectorised); returns {image_id: (label, boxes)}."""
    lineno: np.ndarray | None = None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
    except pd.errors.ParserError:
        # Some row has more than 2 comma-separated fields; pandas stops at the first one. Re-read
        # line by line to report every such row, and go on with the others.
        df, lineno, bad_ids = _read_csv_rows(path, problems)
        ann_ids.update(bad_ids)  # their images are annotated (badly), not unannotated
        if df is None:
            return {}
    except (OSError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        problems.append(
            Problem(
                "malformed-csv",
                str(path),
                f"cannot parse as CSV ({exc})",
                "the file must have the header 'ImageId,PredictionString' and 2 fields per row",
            )
        )
        return {}
    cols = [c.strip() for c in df.columns]
    if cols != ["ImageId", "PredictionString"]:
        problems.append(
            Problem(
                "malformed-csv",
                str(path),
                f"header is {cols}, expected ['ImageId', 'PredictionString']",
                "use the Kaggle LOC_val_solution.csv format",
            )
        )
        return {}
    ids = df["ImageId"].str.strip().map(_strip_image_ext).to_numpy(dtype=object)
    strings = df["PredictionString"].to_numpy(dtype=object)
    if lineno is None:
        lineno = np.arange(len(df)) + 2  # header is line 1
    ann_ids.update(i for i in ids if i)

    empty = np.flatnonzero(ids == "")
    for i in empty:
        problems.append(
            Problem("bad-row", f"{path}:{lineno[i]}", "empty ImageId", "give the image file stem")
        )
    dup_mask = pd.Series(ids).duplicated(keep=False).to_numpy() & (ids != "")
    if dup_mask.any():
        groups: dict[str, list[int]] = defaultdict(list)
        for i in np.flatnonzero(dup_mask):
            groups[ids[i]].append(int(lineno[i]))
        for image_id, lines in groups.items():
            problems.append(
                Problem(
                    "duplicate-id",
                    f"{path}:{','.join(map(str, lines))}",
                    f"image id {image_id} appears on {len(lines)} rows",
                    "merge its boxes into one row",
                )
            )

    tokens_per_row = pd.Series(strings).str.split().str.len().to_numpy(dtype=np.int64)
    badcount = (tokens_per_row == 0) | (tokens_per_row % 5 != 0)
    for i in np.flatnonzero(badcount):
        problems.append(
            Problem(
                "bad-row",
                f"{path}:{lineno[i]} ({ids[i]})",
                f"PredictionString has {tokens_per_row[i]} fields, expected a non-zero multiple of 5",
                "write one group 'WNID xmin ymin xmax ymax' per box, separated by spaces",
            )
        )
    good = np.flatnonzero(~badcount & ~dup_mask & (ids != ""))
    if len(good) == 0:
        return {}
    tok = np.array(" ".join(strings[good]).split(), dtype=object).reshape(-1, 5)
    counts = tokens_per_row[good] // 5
    row_of_box = np.repeat(np.arange(len(good)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    # coordinates: integers as written (integral floats like '12.0' tolerated)
    vals = (
        pd.to_numeric(pd.Series(tok[:, 1:].ravel()), errors="coerce")
        .to_numpy(dtype=np.float64)
        .reshape(-1, 4)
    )
    nonint = ~np.isfinite(vals) | (vals != np.round(vals))
    bad_rows_coord = np.zeros(len(good), dtype=bool)
    for b in np.flatnonzero(nonint.any(axis=1)):
        r = row_of_box[b]
        bad_rows_coord[r] = True
        problems.append(
            Problem(
                "bad-box",
                f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                f"box {list(tok[b, 1:])} has a non-integer coordinate",
                "write integer pixel coordinates",
            )
        )
    boxes = np.where(nonint, 0, vals).astype(np.int64)

    # classes: index in the sorted class list; -1 = unknown
    wn = tok[:, 0]
    codes = pd.Index(list(wnids)).get_indexer(wn).astype(np.int64)
    bad_rows_wnid = np.zeros(len(good), dtype=bool)
    unknown = np.flatnonzero(codes < 0)
    if len(unknown):
        seen_pairs = set()
        for b in unknown:
            r = row_of_box[b]
            bad_rows_wnid[r] = True
            if (r, wn[b]) in seen_pairs:
                continue
            seen_pairs.add((r, wn[b]))
            problems.append(
                Problem(
                    "unknown-wnid",
                    f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                    f"unknown WNID {wn[b]!r}",
                    _WNIDS_FIX,
                )
            )
    fact = pd.factorize(pd.Series(wn))[0].astype(np.int64)
    mixed = np.minimum.reduceat(fact, starts) != np.maximum.reduceat(fact, starts)
    for r in np.flatnonzero(mixed):
        names = sorted(set(wn[starts[r] : starts[r] + counts[r]]))
        problems.append(
            Problem(
                "mixed-classes",
                f"{path}:{lineno[good[r]]} ({ids[good[r]]})",
                f"boxes of several classes {names}",
                "every box of an image must have the image's class",
            )
        )
    bad_box_rows = bad_rows_coord | bad_rows_wnid | mixed
    where = [f"{path}:{lineno[good[r]]} ({ids[good[r]]})" for r in row_of_box] if _any_bad_box(boxes) else []
    _check_boxes(boxes, where, problems)

    keep = ~bad_box_rows
    labels = codes[starts]
    chunks = _split_boxes(boxes, counts)
    return {ids[good[r]]: (int(labels[r]), chunks[r]) for r in np.flatnonzero(keep)}


def _read_csv_rows(path: Path, problems: list[Problem]) -> tuple[pd.DataFrame | None, np.ndarray, set[str]]:
    """Slow path of the CSV reader: every row with more than 2 fields is a problem (with its
    line). Returns the other rows (short rows padded with '', as pandas does), their line
    numbers, and the image ids of the bad rows."""
    bad_ids: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("malformed-csv", str(path), f"cannot read ({exc})", "fix the file"))
        return None, np.zeros(0, dtype=np.int64), bad_ids
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    for rec in reader:
        if not any(field.strip() for field in rec):
            continue
        if header is None:
            header = [c.strip() for c in rec]
            if header != ["ImageId", "PredictionString"]:
                problems.append(
                    Problem(
                        "malformed-csv",
                        f"{path}:{reader.line_num}",
                        f"header is {header}, expected ['ImageId', 'PredictionString']",
                        "use the Kaggle LOC_val_solution.csv format",
                    )
                )
                return None, np.zeros(0, dtype=np.int64), bad_ids
            continue
        if len(rec) > 2:
            problems.append(
                Problem(
                    "bad-row",
                    f"{path}:{reader.line_num}",
                    f"row has {len(rec)} comma-separated fields, expected 2 (ImageId,PredictionString)",
                    "remove the extra commas: boxes are separated by spaces inside PredictionString",
                )
            )
            if rec[0].strip():
                bad_ids.add(_strip_image_ext(rec[0].strip()))
            continue
        rows.append((rec + ["", ""])[:2])
        lines.append(reader.line_num)
    frame = pd.DataFrame(rows, columns=["ImageId", "PredictionString"], dtype=object)
    return frame, np.asarray(lines, dtype=np.int64), bad_ids


def _any_bad_box(boxes: np.ndarray) -> bool:
    if len(boxes) == 0:
        return False
    x0, y0, x1, y1 = boxes.T
    return bool(((x0 < 0) | (y0 < 0) | (x0 > x1) | (y0 > y1)).any())


# --------------------------------------------------------------------------- wsol


def _read_table(
    path: Path, ncols: int, problems: list[Problem], what: str
) -> tuple[list[tuple[str, ...]], list[int]]:
    """Comma-separated lines with exactly ``ncols`` fields -> (rows, line numbers); bad lines reported."""
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("unreadable", str(path), f"cannot read ({exc})", "fix the file"))
        return rows, lines
    for n, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s:
            continue
        parts = tuple(p.strip() for p in s.split(","))
        if len(parts) != ncols:
            problems.append(
                Problem(
                    "bad-line",
                    f"{path}:{n}",
                    f"has {len(parts)} comma-separated fields, expected {ncols}",
                    f"write lines as '{what}'",
                )
            )
            continue
        rows.append(parts)
        lines.append(n)
    return rows, lines


def _read_wsol(
    meta: Path,
    wnids: tuple[str, ...],
    problems: list[Problem],
    ann_ids: set[str],
    sizes: dict[str, tuple[int, int]] | None = None,
) -> tuple[Records, dict[str, str]]:
    """Parse wsolevaluation metadata; returns ({image_id: (label, boxes)}, {image_id: path}) and
    fills ``sizes`` from ``image_sizes.txt`` (when present) for the images it lists."""
    missing = [f for f in WSOL_FILES if not (meta / f).is_file()]
    for f in missing:
        problems.append(
            Problem(
                "missing-file",
                str(meta / f),
                "required wsol metadata file is missing",
                f"provide {f} next to the other metadata files",
            )
        )
    if missing:
        return {}, {}
    ids_file, labels_file, loc_file = (meta / f for f in WSOL_FILES)

    # image_ids.txt
    try:
        paths = [s for s in (raw.strip() for raw in ids_file.read_text(encoding="utf-8").splitlines()) if s]
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("unreadable", str(ids_file), f"cannot read ({exc})", "fix the file"))
        return {}, {}
    dups = sorted(p for p, c in Counter(paths).items() if c > 1)
    for p in dups:
        problems.append(
            Problem(
                "duplicate-id", str(ids_file), f"path {p} is listed more than once", "list each image once"
            )
        )
    order = list(dict.fromkeys(paths))
    path_index = {p: i for i, p in enumerate(order)}
    stems = [_strip_image_ext(os.path.basename(p)) for p in order]
    stem_paths: dict[str, list[str]] = defaultdict(list)
    for p, s in zip(order, stems):
        stem_paths[s].append(p)
    for s, ps in stem_paths.items():
        if len(ps) > 1:
            problems.append(
                Problem(
                    "duplicate-id",
                    str(ids_file),
                    f"image id {s} is named by several paths {ps}",
                    "keep one file per image id",
                )
            )
    ann_ids.update(stems)
    n_img = len(order)

    # class_labels.txt
    label_of = np.full(n_img, -1, dtype=np.int64)
    rows, lines = _read_table(labels_file, 2, problems, "path,label")
    seen_label: dict[str, int] = {}
    for (p, lab), ln in zip(rows, lines):
        where = f"{labels_file}:{ln}"
        v = _parse_int(lab)
        if p not in path_index:
            problems.append(
                Problem(
                    "unknown-image",
                    where,
                    f"{p} is not listed in {ids_file.name}",
                    f"add it to {ids_file.name} or remove this line",
                )
            )
            continue
        if p in seen_label:
            problems.append(
                Problem(
                    "duplicate-id",
                    where,
                    f"{p} already has a label on line {seen_label[p]}",
                    "give each image one label",
                )
            )
            continue
        seen_label[p] = ln
        if v is None or not 0 <= v < len(wnids):
            problems.append(
                Problem(
                    "bad-label",
                    where,
                    f"label {lab!r} is not a class index in [0, {len(wnids) - 1}]",
                    "labels are indices in sorted-WNID order (0 = n01440764)",
                )
            )
            continue
        label_of[path_index[p]] = v
        parent = os.path.basename(os.path.dirname(p))
        if WNID_RE.match(parent) and parent != wnids[v]:
            problems.append(
                Problem(
                    "label-mismatch",
                    where,
                    f"{p} is in class folder {parent} but labelled {v} ({wnids[v]})",
                    "fix the label or move the image",
                )
            )
    for i in np.flatnonzero(label_of < 0):
        if order[i] not in seen_label:
            problems.append(
                Problem(
                    "no-label",
                    str(labels_file),
                    f"{order[i]} has no class label",
                    f"add a line '{order[i]},<label>'",
                )
            )

    # image_sizes.txt (optional): sizes of the listed images, used to check and clip boxes
    sizes_file = meta / WSOL_SIZES
    if sizes_file.is_file():
        srows, slines = _read_table(sizes_file, 3, problems, "path,width,height")
        for (p, w, h), ln in zip(srows, slines):
            wi, hi = _parse_int(w), _parse_int(h)
            if wi is None or hi is None or wi <= 0 or hi <= 0:
                problems.append(
                    Problem(
                        "bad-size",
                        f"{sizes_file}:{ln}",
                        f"size {w},{h} is not two positive integers",
                        "write 'path,width,height'",
                    )
                )
            elif sizes is not None and p in path_index:
                sizes[stems[path_index[p]]] = (wi, hi)

    # localization.txt
    brows, blines = _read_table(loc_file, 5, problems, "path,x0,y0,x1,y1")
    img_of_box = np.array([path_index.get(r[0], -1) for r in brows], dtype=np.int64)
    for j in np.flatnonzero(img_of_box < 0):
        problems.append(
            Problem(
                "unknown-image",
                f"{loc_file}:{blines[j]}",
                f"{brows[j][0]} is not listed in {ids_file.name}",
                f"add it to {ids_file.name} or remove this line",
            )
        )
    coords = np.array([r[1:] for r in brows], dtype=object).reshape(-1, 4)
    vals = pd.to_numeric(pd.Series(coords.ravel()), errors="coerce").to_numpy(dtype=np.float64).reshape(-1, 4)
    nonint = ~np.isfinite(vals) | (vals != np.round(vals))
    for j in np.flatnonzero(nonint.any(axis=1)):
        problems.append(
            Problem(
                "bad-box",
                f"{loc_file}:{blines[j]}",
                f"box {list(coords[j])} has a non-integer coordinate",
                "write integer pixel coordinates",
            )
        )
    boxes = np.where(nonint, 0, vals).astype(np.int64)
    _check_boxes(boxes, [f"{loc_file}:{ln}" for ln in blines] if _any_bad_box(boxes) else [], problems)

    valid = (img_of_box >= 0) & ~nonint.any(axis=1)
    counts = np.bincount(img_of_box[valid], minlength=n_img)
    mentioned = set(img_of_box.tolist())
    for i in np.flatnonzero(counts == 0):
        if i not in mentioned:  # images whose boxes were all invalid are already reported
            problems.append(
                Problem(
                    "no-boxes",
                    str(loc_file),
                    f"{order[i]} has no box",
                    "every validation image needs at least one box",
                )
            )
    sel = np.flatnonzero(valid)
    sel = sel[np.argsort(img_of_box[sel], kind="stable")]  # group by image, keep file order
    chunks = _split_boxes(boxes[sel], counts)
    records = {
        stems[i]: (int(label_of[i]), chunks[i]) for i in range(n_img) if counts[i] > 0 and label_of[i] >= 0
    }
    return records, {stems[i]: order[i] for i in range(n_img)}


# --------------------------------------------------------------------------- GT entry point


def _read_gt(
    root: Path, layout: str, wnids: WnidsArg, problems: list[Problem], ann_ids: set[str]
) -> GroundTruth | None:
    """Parse GT into a GroundTruth, appending problems; ``ann_ids`` collects every image id
    mentioned by the annotations (also those with invalid records)."""
    n_before = len(problems)
    gt = _read_gt_layout(root, layout, wnids, problems, ann_ids)
    if gt is not None and not ann_ids and len(problems) == n_before:
        problems.append(
            Problem(
                "no-annotations",
                str(gt.source),
                "the annotations name no image",
                "point root at a non-empty annotation set",
            )
        )
    return gt


def _read_gt_layout(
    root: Path, layout: str, wnids: WnidsArg, problems: list[Problem], ann_ids: set[str]
) -> GroundTruth | None:
    if not root.is_dir():
        problems.append(Problem("no-root", str(root), "is not a directory", "pass the dataset root folder"))
        return None
    if layout == "auto":
        try:
            layout = detect_layout(root)
        except DataError as exc:
            problems.extend(exc.problems)
            return None
    if layout not in LAYOUTS:
        problems.append(
            Problem(
                "bad-layout",
                str(root),
                f"unknown layout {layout!r}",
                f"use one of 'auto', {', '.join(map(repr, LAYOUTS))}",
            )
        )
        return None
    # The class list is the same for every layout: wnids=, else root/LOC_synset_mapping.txt, else ImageNet's.
    cls = _resolve_wnids(wnids, root / CSV_SYNSETS, problems)
    if layout == "voc":
        ann_dir = _find_voc_dir(root)
        if ann_dir is None:
            problems.append(
                Problem(
                    "no-annotations",
                    str(root),
                    "no *.xml files in " + ", ".join(f"{v}/" for v in VOC_DIRS),
                    "put the per-image XML files in one of these folders",
                )
            )
            return GroundTruth(layout, cls, {}, root)
        index = {w: i for i, w in enumerate(cls)}
        voc_sizes: dict[str, tuple[int, int]] = {}
        records = _read_voc(ann_dir, index, problems, ann_ids, voc_sizes)
        return GroundTruth(layout, cls, records, ann_dir, sizes=voc_sizes)
    if layout == "csv":
        sol = root / CSV_SOLUTION
        if not sol.is_file():
            problems.append(
                Problem("missing-file", str(sol), "not found", f"put {CSV_SOLUTION} in the root folder")
            )
            return GroundTruth(layout, cls, {}, sol)
        return GroundTruth(layout, cls, _read_csv(sol, cls, problems, ann_ids), sol)
    meta = _find_wsol_dir(root)
    if meta is None:
        problems.append(
            Problem(
                "no-annotations",
                str(root),
                f"no wsol metadata ({', '.join(WSOL_FILES)}) in metadata/ or the root",
                "put the metadata files in root/metadata/",
            )
        )
        return GroundTruth(layout, cls, {}, root)
    wsol_sizes: dict[str, tuple[int, int]] = {}
    records, paths = _read_wsol(meta, cls, problems, ann_ids, wsol_sizes)
    return GroundTruth(layout, cls, records, meta, paths, sizes=wsol_sizes)


def read_gt(root: PathLike, layout: str = "auto", *, wnids: WnidsArg = None) -> GroundTruth:
    """Parse the ground truth under ``root`` without looking at image files.

    ``wnids``: class list (sequence of WNIDs, or a ``LOC_synset_mapping.txt`` path); it is
    sorted, and labels are positions in it. Default: ``root/LOC_synset_mapping.txt`` if present
    (any layout), else the shipped 1000-class list. Boxes are returned exactly as written (the
    size check and clipping happen in :func:`load_val`).
    Raises :class:`DataError` listing every problem.
    """
    problems: list[Problem] = []
    gt = _read_gt(Path(root), layout, wnids, problems, set())
    if problems or gt is None:
        raise DataError(problems, context=f"root {root}")
    return gt


# --------------------------------------------------------------------------- blacklist


def devkit_index_to_image_id(n: int) -> str:
    """1-based devkit validation index -> image id (36 -> 'ILSVRC2012_val_00000036')."""
    return f"ILSVRC2012_val_{n:08d}"


def _escapes_root(path: Path, root: Path) -> Path | None:
    """If ``path`` lies inside ``root`` as written but resolves (through symlinks) outside the
    resolved root, the resolved path; else None. Paths outside the root as written are the
    caller's explicit choice and are not judged."""
    absolute = Path(os.path.normpath(path.absolute()))
    base = Path(os.path.normpath(root.absolute()))
    if not absolute.is_relative_to(base):
        return None
    real = absolute.resolve()
    return None if real.is_relative_to(base.resolve()) else real


def _parse_blacklist(blacklist: BlacklistArg, problems: list[Problem], root: Path | None = None) -> set[str]:
    if blacklist is None:
        return set()
    if isinstance(blacklist, (str, os.PathLike)):
        p = Path(blacklist)
        outside = _escapes_root(p, root) if root is not None else None
        if outside is not None:
            problems.append(
                Problem(
                    "unsafe-path",
                    str(p),
                    f"the blacklist is inside the data root {root} but resolves to {outside}, outside it "
                    "(refused, not read)",
                    "put the blacklist file itself inside the data root instead of a symlink pointing out of it",
                )
            )
            return set()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(
                Problem("missing-file", str(p), f"cannot read blacklist ({exc})", "fix the blacklist path")
            )
            return set()
        items: list[tuple[str, str | int]] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            s = raw.split("#", 1)[0].strip()
            if s:
                items += [(f"{p}:{n}", tok) for tok in s.replace(",", " ").split()]
    else:
        items = [(f"blacklist[{i}]", v) for i, v in enumerate(blacklist)]
    out: set[str] = set()
    for where, v in items:
        if isinstance(v, (int, np.integer)) or (isinstance(v, str) and _DEVKIT_ID_RE.match(v)):
            k = int(v)
            if k < 1:
                problems.append(
                    Problem(
                        "bad-blacklist", where, f"devkit index {v} must be >= 1", "devkit indices are 1-based"
                    )
                )
                continue
            out.add(devkit_index_to_image_id(k))
        elif isinstance(v, str) and v.strip():
            out.add(_strip_image_ext(os.path.basename(v.strip())))
        else:
            problems.append(
                Problem(
                    "bad-blacklist",
                    where,
                    f"entry {v!r} is neither an image id nor a devkit index",
                    "write one image id or 1-based index per line",
                )
            )
    return out


def read_blacklist(blacklist: BlacklistArg) -> frozenset[str]:
    """Image ids named by a blacklist file (or iterable).

    Each line holds image ids (``ILSVRC2012_val_00000036``) or 1-based devkit indices
    (``36``); blank lines and ``#`` comments are ignored. Raises :class:`DataError`.
    """
    problems: list[Problem] = []
    out = _parse_blacklist(blacklist, problems)
    if problems:
        raise DataError(problems)
    return frozenset(out)


# --------------------------------------------------------------------------- images


def _pick_images_dir(root: Path, images_dir: PathLike | None, problems: list[Problem]) -> Path | None:
    if images_dir is not None:
        d = Path(images_dir)
        if not d.is_absolute():
            d = Path.cwd() / d
        if not d.is_dir():
            problems.append(
                Problem(
                    "no-images-dir",
                    str(d),
                    "images_dir is not a directory",
                    "pass the folder holding the images",
                )
            )
            return None
        return d
    existing = [root / r for r in IMAGE_DIRS if (root / r).is_dir()]
    for d in existing:
        if _has_images(d):
            return d
    if existing:
        return existing[0]
    return None


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_images(folder: Path, problems: list[Problem]) -> tuple[dict[str, str], dict[str, str]]:
    """Images in ``folder`` or its direct sub-folders: ({stem: path}, {stem: subfolder name}).

    Every entry whose name has an image extension counts, whatever it is (regular file,
    directory, broken symlink, FIFO...): what cannot be decoded becomes a ``failed`` record at
    run time instead of a silently missing image. Sub-folders without an image extension are
    class folders (one level)."""
    found: dict[str, str] = {}
    subdir: dict[str, str] = {}
    dups: dict[str, list[str]] = defaultdict(list)

    def add(path: str, name: str, sub: str) -> None:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            return
        if stem in found:
            dups[stem].append(path)
            return
        found[stem] = path
        if sub:
            subdir[stem] = sub

    with os.scandir(folder) as it:
        entries = list(it)
    for e in entries:
        if _is_image_name(e.name):
            add(e.path, e.name, "")
        elif e.is_dir():
            try:
                with os.scandir(e.path) as sub:
                    for s in sub:
                        add(s.path, s.name, e.name)
            except OSError as exc:
                problems.append(
                    Problem(
                        "unreadable",
                        e.path,
                        f"cannot list this class folder ({exc.strerror or exc})",
                        "fix its permissions or move it out of the image folder",
                    )
                )
    for stem, extra in sorted(dups.items()):
        problems.append(
            Problem(
                "duplicate-image",
                str(folder),
                f"image id {stem} has several files {[found[stem], *extra]}",
                "keep one file per image id",
            )
        )
    return found, subdir


def load_val(
    root: PathLike,
    *,
    layout: str = "auto",
    images_dir: PathLike | None = None,
    blacklist: BlacklistArg = None,
    wnids: WnidsArg = None,
) -> ValSet:
    """Load and validate the ILSVRC-2012 validation set under ``root``.

    Args:
        root: dataset root holding the annotations (see module docstring for layouts).
        layout: 'auto' (detect; error if several layouts are present), 'voc', 'csv' or 'wsol'.
        images_dir: folder with the images (flat or ``<wnid>/`` sub-folders). Default: the
            first of ``root/val``, ``root/images``, ``root/ILSVRC/Data/CLS-LOC/val``, ``root``
            that contains images.
        blacklist: file (or iterable) of image ids / 1-based devkit indices.
        wnids: class list (WNIDs or a synset-mapping path); sorted before use.

    Every annotated image needs a file and every image file needs an annotation. Boxes are
    checked against the image size and overhanging ones clipped (module docstring;
    :attr:`ValSet.clipped_boxes`). All problems (GT, images, boxes, blacklist) are collected and
    raised as one :class:`DataError`.
    """
    root_p = Path(root).absolute()
    problems: list[Problem] = []
    ann_ids: set[str] = set()
    gt = _read_gt(root_p, layout, wnids, problems, ann_ids)
    bl = _parse_blacklist(blacklist, problems, root_p)
    if gt is None:
        raise DataError(problems, context=f"root {root_p}")
    img_dir = _pick_images_dir(root_p, images_dir, problems)
    found: dict[str, str] = {}
    subdir: dict[str, str] = {}
    if img_dir is None:
        if images_dir is None:
            problems.append(
                Problem(
                    "no-images-dir",
                    str(root_p),
                    "no image folder: tried " + ", ".join(IMAGE_DIRS),
                    "pass images_dir= pointing to the validation images",
                )
            )
    else:
        found, subdir = _scan_images(img_dir, problems)

    # wsol: the path written in image_ids.txt wins when it exists (relative to root or images dir)
    resolved: dict[str, str] = {}
    if gt.paths:
        scanned = set(found.values())
        bases = [str(root_p)] + ([str(img_dir)] if img_dir is not None else [])
        for image_id, rel in gt.paths.items():
            for base in bases:
                cand = os.path.join(base, rel)
                if cand in scanned or os.path.isfile(cand):
                    resolved[image_id] = cand
                    break

    src = gt.source
    where_imgs = str(img_dir) if img_dir is not None else str(root_p)
    missing = sorted(i for i in ann_ids if i not in resolved and i not in found)
    for image_id in missing:
        expected = (
            os.path.join(str(root_p), gt.paths[image_id])
            if image_id in gt.paths
            else os.path.join(where_imgs, image_id + ".JPEG")
        )
        problems.append(
            Problem(
                "missing-image",
                expected,
                f"image {image_id} is annotated in {src} but no image file was found",
                "add the image (flat or in its <wnid>/ folder), or pass images_dir= pointing to the images, "
                "or remove its annotation",
            )
        )
    unannotated = sorted(set(found) - ann_ids)
    for image_id in unannotated:
        problems.append(
            Problem(
                "unannotated-image",
                found[image_id],
                f"image file has no annotation in {src}",
                "add its annotation, or move the file out of the image folder (or pass images_dir=)",
            )
        )

    images: list[GTImage] = []
    for image_id in sorted(gt.records):
        label, boxes = gt.records[image_id]
        path = resolved.get(image_id) or found.get(image_id)
        if path is None:
            continue
        # class-folder check (wsol paths were already checked against their labels)
        sub = "" if image_id in resolved else subdir.get(image_id, "")
        if WNID_RE.match(sub) and sub != gt.wnids[label]:
            problems.append(
                Problem(
                    "label-mismatch",
                    path,
                    f"image is in class folder {sub} but annotated as {gt.wnids[label]} (class {label})",
                    "move the image to its class folder or fix the annotation",
                )
            )
        images.append(GTImage(image_id, Path(path), label, boxes))
    images, clipped = _fit_boxes_to_images(images, gt, problems)
    if problems:
        raise DataError(problems, context=f"root {root_p}")
    ids = {im.image_id for im in images}
    return ValSet(
        images=tuple(images),
        wnids=gt.wnids,
        layout=gt.layout,
        root=root_p,
        blacklisted=frozenset(bl & ids),
        clipped_boxes=sum(clipped.values()),
        clipped_images=tuple(sorted(clipped)),
        images_dir=img_dir,
    )


# --------------------------------------------------------------------------- boxes vs image size

#: Threads reading image headers when the annotations state no sizes (I/O bound).
HEADER_THREADS = 8


def image_header_size(path: PathLike) -> tuple[int, int] | None:
    """(width, height) from an image file's header (Pillow opens lazily: no pixel is decoded), or
    None when it cannot be read: not a non-empty regular file (never opened then, so a FIFO
    cannot block), unreadable, or not an image. Pillow's decompression-bomb warning is silenced."""
    from PIL import Image  # local: only load_val needs Pillow here

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except Exception:  # noqa: BLE001 - any unreadable header means "size unknown"
        return None
    return (int(w), int(h)) if w > 0 and h > 0 else None


def _header_sizes(paths: Sequence[Path]) -> list[tuple[int, int] | None]:
    if len(paths) <= 2 * HEADER_THREADS:
        return [image_header_size(p) for p in paths]
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        return list(pool.map(image_header_size, paths, chunksize=64))


def _fit_boxes_to_images(
    images: list[GTImage], gt: GroundTruth, problems: list[Problem]
) -> tuple[list[GTImage], dict[str, int]]:
    """Check every box against its image's size (stated by the annotation, else the image
    header): a box entirely outside is a problem; one overhanging the right/bottom edge is
    clipped to W-1 / H-1. Returns the images (clipped ones replaced) and {image_id: boxes clipped}."""
    stated_by = {"voc": "<size> in its XML file", "wsol": WSOL_SIZES}.get(gt.layout, "annotation")
    unknown = [im for im in images if im.image_id not in gt.sizes]
    header = dict(zip((im.image_id for im in unknown), _header_sizes([im.path for im in unknown])))
    out: list[GTImage] = []
    clipped: dict[str, int] = {}
    for im in images:
        size = gt.sizes.get(im.image_id) or header.get(im.image_id)
        if size is None:
            out.append(im)  # size unknown (unreadable image: it will be a failed record)
            continue
        w, h = size
        b = im.boxes
        valid = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 0] <= b[:, 2]) & (b[:, 1] <= b[:, 3])
        outside = valid & ((b[:, 0] > w - 1) | (b[:, 1] > h - 1))  # invalid boxes are reported already
        source = stated_by if im.image_id in gt.sizes else "the image file's header"
        for box in b[outside]:
            problems.append(
                Problem(
                    "box-outside",
                    f"{gt.source} ({im.image_id})",
                    f"box {[int(v) for v in box]} lies outside the {w}x{h} image (size from {source})",
                    "fix the box or the image size; boxes are 0-based inclusive, "
                    f"so xmin <= {w - 1} and ymin <= {h - 1}",
                )
            )
        over = (b[:, 2] > w - 1) | (b[:, 3] > h - 1)
        if outside.any() or not over.any():
            out.append(im)
            continue
        fitted = b.copy()
        fitted[:, 2] = np.minimum(fitted[:, 2], w - 1)
        fitted[:, 3] = np.minimum(fitted[:, 3], h - 1)
        out.append(GTImage(im.image_id, im.path, im.label, _readonly(fitted)))
        clipped[im.image_id] = int(over.sum())
    return out, clipped
