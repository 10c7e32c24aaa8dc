"""Data sets behind one small interface: the types every reader returns, and their validation.

A data set is a list of images, each with its class (an index into :attr:`Dataset.class_ids`,
whose entries are any strings: WordNet ids for ILSVRC, ``001.Black_footed_Albatross`` for
CUB-200-2011, OpenImages' folder ids...), its GT boxes and, for mask data sets, its instance
masks. One reader module per on-disk layout (:mod:`bench.data.readers`) parses annotations into a
:class:`GroundTruth`; :func:`bench.data.open.open_dataset` matches it with the image files and
checks it here into a :class:`Dataset`.

Conventions:

* Boxes are ``xyxy``, **0-based, inclusive** pixel indices, never shifted. A box is valid when
  ``0 <= xmin <= xmax`` and ``0 <= ymin <= ymax`` (otherwise: an error). Boxes are also checked
  against the image size (W, H) when it is known — from the annotation (VOC ``<size>``, wsol
  ``image_sizes.txt``), else from the image file's header (read lazily, no pixels decoded): a box
  lying entirely outside the image (``xmin > W-1`` or ``ymin > H-1``) is an error; a box
  overhanging the right/bottom edge is **clipped** to ``xmax = W-1`` / ``ymax = H-1`` and counted
  in :attr:`Dataset.clipped_boxes` (official ILSVRC boxes include a few with ``xmax = W``; CUB
  boxes ``x + w`` often end one past the last pixel). When the size cannot be known (unreadable
  header: that image will be a ``failed`` record), the boxes are kept as written.
* Class index = position in the class list. Where the layout gives only class ids (VOC, CSV, an
  explicit list), the list is **sorted** (torchvision order for WordNet ids); where it numbers
  the classes itself (CUB ``classes.txt``, wsol ``class_labels.txt``) its numbering is kept.
* Every box of an image has the image's class.

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

import hashlib
import os
import re
import stat
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from bench.data.classes import load_wnids, read_synset_mapping

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_DIRS",
    "CSV_SYNSETS",
    "Problem",
    "DataError",
    "GTImage",
    "Dataset",
    "GroundTruth",
    "gt_fingerprint",
    "class_names_for",
    "read_blacklist",
    "devkit_index_to_image_id",
    "image_header_size",
]

#: Image file extensions recognised (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpeg", ".jpg", ".png", ".gif", ".bmp")
#: Image folders tried under the root, in order, when none is given.
IMAGE_DIRS: tuple[str, ...] = ("val", "images", "ILSVRC/Data/CLS-LOC/val", ".")
#: ILSVRC's class list file; any layout's root may hold one (it then is the class list).
CSV_SYNSETS = "LOC_synset_mapping.txt"

PathLike = Union[str, "os.PathLike[str]"]
ClassesArg = Union[None, PathLike, Sequence[str]]
BlacklistArg = Union[None, PathLike, Iterable[Union[str, int]]]
Records = dict[str, tuple[int, np.ndarray]]  # image_id -> (label, (n,4) int64 boxes)

BOX_FIX = (
    "boxes are 0-based inclusive xyxy and need 0 <= xmin <= xmax and 0 <= ymin <= ymax; "
    "correct or remove this box"
)
CLASS_FIX = (
    "use class ids of the data set's class list, or pass classes= (a list of ids or a "
    "LOC_synset_mapping.txt path) that contains it"
)
_DEVKIT_ID_RE = re.compile(r"^\d+$")
_CLASS_ID_RE = re.compile(r"^[^\s,]+$")


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
    """Invalid or inconsistent data set (annotations, images, blacklist).

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
        head = f"{n} problem{'s' if n != 1 else ''} found in the data set"
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
    """Ground truth of one image.

    ``boxes`` is a read-only ``(n, 4)`` int64 array, xyxy 0-based inclusive, in annotation order;
    ``n >= 1``. Mask data sets (OpenImages) also carry ``masks``: the instance mask files (any
    pixel > 0.5 of 255-scaled grey is foreground) and ``ignore``, the ignore-region file (None
    when the annotation names none); their boxes are the instance masks' bounding boxes.
    """

    image_id: str  # file stem, e.g. 'ILSVRC2012_val_00000001'
    path: Path  # absolute path of the image file
    label: int  # class index: label i <-> Dataset.class_ids[i]
    boxes: np.ndarray  # (n, 4) int64 xyxy inclusive 0-based
    masks: tuple[Path, ...] = ()
    ignore: Path | None = None
    #: ``(width, height)`` in pixels as the annotation states it (wsol ``image_sizes.txt``, VOC
    #: ``<size>``), None when it states none. Not part of equality or of the GT fingerprint: a
    #: layout that states sizes and one that does not describe the same ground truth.
    size: tuple[int, int] | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GTImage):
            return NotImplemented
        return (
            self.image_id == other.image_id
            and self.path == other.path
            and self.label == other.label
            and np.array_equal(self.boxes, other.boxes)
            and self.masks == other.masks
            and self.ignore == other.ignore
        )

    def __hash__(self) -> int:
        return hash((self.image_id, self.path, self.label, self.boxes.tobytes(), self.masks, self.ignore))


@dataclass(frozen=True)
class Dataset:
    """A loaded, validated data set (see :func:`bench.data.open.open_dataset`).

    ``class_ids[i]`` is the id of class ``i`` (any string); ``class_names[i]`` its readable name.
    The remaining fields say where the data came from, so that :meth:`describe` /
    :func:`bench.data.open.reopen` can load exactly the same data again.
    """

    images: tuple[GTImage, ...]  # sorted by image_id
    class_ids: tuple[str, ...]  # label i <-> class_ids[i]
    layout: str  # 'voc' | 'csv' | 'wsol' | 'cub'
    root: Path
    blacklisted: frozenset[str]  # image ids on the blacklist (still in images)
    #: GT boxes clipped to the image (xmax > W-1 or ymax > H-1 as written), and their images.
    clipped_boxes: int = 0
    clipped_images: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    #: where the class list came from: 'imagenet-1k' (shipped), 'file' (class_file), 'list'
    #: (given ids), 'cub' (classes.txt), 'wsol-folders' (image folders of wsol metadata)
    class_source: str = "imagenet-1k"
    class_file: Path | None = None
    images_dir: Path | None = None  # the images folder given (None: found under the root)
    split: str = ""  # '' when the layout has no splits
    metadata_dir: Path | None = None  # wsol metadata folder given (None: found under the root)
    masks_dir: Path | None = None  # masks folder given (None: found under the root)
    blacklist_path: Path | None = None  # blacklist file, when one was read from a file
    #: False: opened for scoring saved maps (``open_dataset(images_required=False)``); annotated
    #: images without a file are kept (their ``path`` is where the file would be)
    images_required: bool = True

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        """Total number of GT boxes."""
        return int(sum(len(im.boxes) for im in self.images))

    @property
    def has_masks(self) -> bool:
        """True when the images carry instance masks (PxAP can be computed)."""
        return any(im.masks for im in self.images)

    def get(self, image_id: str) -> GTImage:
        """The record of ``image_id`` (KeyError if absent)."""
        lookup = self.__dict__.get("_by_id")
        if lookup is None:
            lookup = {im.image_id: im for im in self.images}
            object.__setattr__(self, "_by_id", lookup)
        return lookup[image_id]

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the GT content.

        Covers the class list, image ids, labels, boxes (in order), the blacklist and, for mask
        data sets, the mask files' paths relative to the root; it is independent of the layout the
        data was read from and of where the data set lies.
        """
        masks = None
        if self.has_masks:
            masks = [
                [_relative(p, self.root) for p in im.masks] + [_relative(im.ignore, self.root) if im.ignore else ""]
                for im in self.images
            ]
        return gt_fingerprint(
            self.class_ids,
            [im.image_id for im in self.images],
            [im.label for im in self.images],
            [im.boxes for im in self.images],
            self.blacklisted,
            masks=masks,
        )

    def describe(self) -> dict[str, Any]:
        """Everything needed to open this exact data set again (JSON-able; see ``reopen``).

        Paths inside the root are written relative to it, so a moved data set reopens with
        ``reopen(description, root=NEW_ROOT)``.
        """
        classes: dict[str, Any] = {"source": self.class_source}
        if self.class_source == "list":
            classes["ids"] = list(self.class_ids)
        if self.class_file is not None:
            classes["file"] = _relative(self.class_file, self.root)
        return {
            "root": str(self.root),
            "layout": self.layout,
            "images": _relative(self.images_dir, self.root) if self.images_dir is not None else None,
            "classes": classes,
            "split": self.split,
            "metadata": _relative(self.metadata_dir, self.root) if self.metadata_dir is not None else None,
            "masks": _relative(self.masks_dir, self.root) if self.masks_dir is not None else None,
            "blacklist": _relative(self.blacklist_path, self.root) if self.blacklist_path is not None else None,
            "fingerprint": self.fingerprint(),
            **({} if self.images_required else {"images_required": False}),
        }


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators) when inside it, else absolute."""
    absolute = Path(os.path.normpath(Path(path).absolute()))
    base = Path(os.path.normpath(Path(root).absolute()))
    return absolute.relative_to(base).as_posix() if absolute.is_relative_to(base) else str(absolute)


def gt_fingerprint(
    class_ids: Sequence[str],
    image_ids: Sequence[str],
    labels: Sequence[int],
    boxes: Sequence[np.ndarray],
    blacklisted: Iterable[str] = (),
    *,
    masks: Sequence[Sequence[str]] | None = None,
) -> str:
    """SHA-256 of GT content in a canonical byte form (see :meth:`Dataset.fingerprint`).

    ``image_ids`` must be sorted (as in :class:`Dataset`); ``labels``/``boxes``/``masks`` align
    with it. The class list section keeps its historical tag ``wnids`` so that fingerprints of
    box data sets are unchanged; the ``masks`` section is added only for mask data sets.
    """
    h = hashlib.sha256()

    def section(tag: str, payload: bytes) -> None:
        h.update(f"{tag}:{len(payload)}:".encode())
        h.update(payload)

    section("wsol-bench-gt", b"v1")
    section("wnids", "\n".join(class_ids).encode())
    section("ids", "\n".join(image_ids).encode())
    section("labels", np.asarray(labels, dtype="<i8").tobytes())
    section("counts", np.asarray([len(b) for b in boxes], dtype="<i8").tobytes())
    flat = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes]) if boxes else np.empty((0, 4))
    section("boxes", flat.astype("<i8").tobytes())
    section("blacklist", "\n".join(sorted(blacklisted)).encode())
    if masks is not None:
        section("masks", "\n".join("\t".join(m) for m in masks).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class GroundTruth:
    """Parsed GT before images are matched (what a reader returns)."""

    layout: str
    class_ids: tuple[str, ...]  # label i <-> class_ids[i]
    records: dict[str, tuple[int, np.ndarray]]  # image_id -> (label, (n,4) int64 boxes)
    source: Path  # annotation folder or file that was read
    paths: dict[str, str] = field(default_factory=dict)  # image_id -> image path as written (wsol, cub)
    #: image_id -> (width, height) stated by the annotation (VOC <size>, wsol image_sizes.txt)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: mask data sets: image_id -> (instance mask paths as written, ignore path or '')
    masks: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    class_source: str = "imagenet-1k"
    class_file: Path | None = None
    #: image-path bases the reader knows of (e.g. CUB's images/), tried before the images folder
    image_bases: tuple[Path, ...] = ()
    class_names: tuple[str, ...] = ()

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for _, b in self.records.values()))


# --------------------------------------------------------------------------- helpers


def strip_image_ext(name: str) -> str:
    """'x.JPEG' -> 'x'; names without a known image extension are returned unchanged."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


def has_file(folder: Path, suffix: str, *, subfolders: bool) -> bool:
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
    return any(has_file(Path(d), suffix, subfolders=False) for d in dirs)


def has_images(folder: Path) -> bool:
    return any(has_file(folder, ext, subfolders=True) for ext in IMAGE_EXTENSIONS)



def parse_int(text: str | None) -> int | None:
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


def check_boxes(boxes: np.ndarray, where: Sequence[str], problems: list[Problem]) -> None:
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
            Problem("bad-box", where[i], f"box {[int(v) for v in b]} is invalid ({', '.join(why)})", BOX_FIX)
        )


def readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def split_boxes(boxes: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Split a (N,4) array into consecutive read-only chunks of the given sizes."""
    boxes = readonly(np.ascontiguousarray(boxes, dtype=np.int64))
    return np.split(boxes, np.cumsum(counts)[:-1]) if len(counts) else []



def any_bad_box(boxes: np.ndarray) -> bool:
    if len(boxes) == 0:
        return False
    x0, y0, x1, y1 = boxes.T
    return bool(((x0 < 0) | (y0 < 0) | (x0 > x1) | (y0 > y1)).any())



def read_table(
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




def resolve_classes(
    classes: ClassesArg, default_file: Path | None, problems: list[Problem]
) -> tuple[tuple[str, ...], str, Path | None]:
    """The class list, where it came from, and its file: ``classes`` (a sequence of ids, sorted
    here; or a ``LOC_synset_mapping.txt`` path), else ``default_file`` if it exists, else the
    shipped 1000-class ImageNet list. Returns ``(class_ids, source, file)`` with source
    ``'list'``, ``'file'`` or ``'imagenet-1k'``."""
    try:
        if classes is None:
            if default_file is not None and default_file.is_file():
                return tuple(read_synset_mapping(default_file)), "file", default_file
            return tuple(load_wnids()), "imagenet-1k", None
        if isinstance(classes, (str, os.PathLike)):
            return tuple(read_synset_mapping(classes)), "file", Path(classes).absolute()
        lst = [str(w).strip() for w in classes]
    except (OSError, ValueError) as exc:
        problems.append(
            Problem(
                "class-list",
                str(classes if classes is not None else default_file),
                str(exc),
                "fix the class list file",
            )
        )
        return tuple(load_wnids()), "imagenet-1k", None
    bad = [w for w in lst if not _CLASS_ID_RE.match(w)]
    dups = sorted(w for w, c in Counter(lst).items() if c > 1)
    if bad:
        problems.append(
            Problem(
                "class-list", "classes=", f"not class ids: {bad}",
                "give non-empty ids without spaces or commas, like 'n01440764' or '001.Black_footed_Albatross'",
            )
        )
    if dups:
        problems.append(Problem("class-list", "classes=", f"duplicated class ids: {dups}", "list each id once"))
    if not lst:
        problems.append(Problem("class-list", "classes=", "empty class list", "give at least one class id"))
        return tuple(load_wnids()), "imagenet-1k", None
    return tuple(sorted(set(lst))), "list", None


_CUB_ID_RE = re.compile(r"^\d+\.(.+)$")


def class_names_for(class_ids: Sequence[str], class_file: Path | None = None) -> tuple[str, ...]:
    """Readable names in class order: the class file's names (``LOC_synset_mapping.txt``), else
    ImageNet's for the shipped list, else derived from the id (CUB's ``001.Black_footed_Albatross``
    -> ``Black footed Albatross``), else the id itself."""
    from bench.data.classes import load_class_names, read_synset_names

    if class_file is not None:
        try:
            names = read_synset_names(class_file)
            return tuple(names.get(c, c) for c in class_ids)
        except (OSError, ValueError):
            pass
    if tuple(class_ids) == tuple(load_wnids()):
        return tuple(load_class_names())
    out = []
    for c in class_ids:
        m = _CUB_ID_RE.match(c)
        out.append(m.group(1).replace("_", " ") if m else c)
    return tuple(out)


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


def parse_blacklist(blacklist: BlacklistArg, problems: list[Problem], root: Path | None = None) -> set[str]:
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
            out.add(strip_image_ext(os.path.basename(v.strip())))
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
    out = parse_blacklist(blacklist, problems)
    if problems:
        raise DataError(problems)
    return frozenset(out)



# --------------------------------------------------------------------------- images


def pick_images_dir(root: Path, images_dir: PathLike | None, problems: list[Problem]) -> Path | None:
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
        if has_images(d):
            return d
    if existing:
        return existing[0]
    return None


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_images(folder: Path, problems: list[Problem]) -> tuple[dict[str, str], dict[str, str]]:
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
        if is_image_name(e.name):
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


def header_sizes(paths: Sequence[Path]) -> list[tuple[int, int] | None]:
    if len(paths) <= 2 * HEADER_THREADS:
        return [image_header_size(p) for p in paths]
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        return list(pool.map(image_header_size, paths, chunksize=64))


def fit_boxes_to_images(
    images: list[GTImage], gt: GroundTruth, problems: list[Problem]
) -> tuple[list[GTImage], dict[str, int]]:
    """Check every box against its image's size (stated by the annotation, else the image
    header): a box entirely outside is a problem; one overhanging the right/bottom edge is
    clipped to W-1 / H-1. Returns the images (clipped ones replaced) and {image_id: boxes clipped}."""
    stated_by = {"voc": "<size> in its XML file", "wsol": "image_sizes.txt"}.get(gt.layout, "annotation")
    unknown = [im for im in images if im.image_id not in gt.sizes]
    header = dict(zip((im.image_id for im in unknown), header_sizes([im.path for im in unknown])))
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
        out.append(replace(im, boxes=readonly(fitted)))
        clipped[im.image_id] = int(over.sum())
    return out, clipped
