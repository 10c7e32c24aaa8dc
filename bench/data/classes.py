"""ImageNet-1k class list in torchvision order.

Convention (docs/protocol.md): the class index of a WordNet id (WNID) is its position in the
**sorted** list of WNIDs (0 = ``n01440764`` tench ... 999 = ``n15075141`` toilet tissue).
This is torchvision's order. The ILSVRC devkit's own ``ILSVRC2012_ID`` order
(1 = ``n02119789`` kit fox) is a different numbering and is never used here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from bench.resources import resource_path

__all__ = [
    "WNID_RE",
    "load_wnids",
    "load_class_names",
    "wnid_to_index",
    "read_synset_mapping",
    "read_synset_names",
]

#: A WordNet noun id as used by ImageNet: ``n`` followed by 8 digits.
WNID_RE = re.compile(r"^n\d{8}$")

_WNIDS_RESOURCE = "imagenet_wnids.txt"


def _parse_synset_lines(text: str, source: str) -> list[tuple[str, str]]:
    """Parse ``WNID name, other name`` lines into ``(wnid, first_name)`` pairs, in file order.

    Blank lines are ignored. Raises ``ValueError`` listing every malformed line and every
    duplicated WNID (not only the first).
    """
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        wnid, _, rest = line.partition(" ")
        if not WNID_RE.match(wnid):
            problems.append(
                f"{source}:{lineno}: {wnid!r} is not a WordNet id (expected 'n' + 8 digits, "
                f"line format 'n01440764 tench, Tinca tinca')"
            )
            continue
        if wnid in seen:
            problems.append(f"{source}:{lineno}: WNID {wnid} repeats line {seen[wnid]}")
            continue
        seen[wnid] = lineno
        name = rest.split(",", 1)[0].strip() or wnid
        pairs.append((wnid, name))
    if problems:
        raise ValueError(
            f"{len(problems)} problem(s) in class list {source}:\n  "
            + "\n  ".join(problems)
            + "\nFix the lines so that each reads 'WNID name[, name...]' with a unique WNID."
        )
    if not pairs:
        raise ValueError(f"class list {source} contains no WNIDs")
    return pairs


@lru_cache(maxsize=1)
def _shipped() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(wnids, names) of the shipped 1000-class list, validated to be sorted and unique."""
    path = resource_path(_WNIDS_RESOURCE)
    pairs = _parse_synset_lines(path.read_text(encoding="utf-8"), str(path))
    wnids = tuple(w for w, _ in pairs)
    if list(wnids) != sorted(wnids) or len(wnids) != 1000:
        raise RuntimeError(f"shipped class list {path} must hold 1000 sorted WNIDs")
    return wnids, tuple(n for _, n in pairs)


def load_wnids() -> list[str]:
    """The 1000 ImageNet WNIDs in sorted (torchvision) order; index i = class index i.

    The file is read once and cached; a fresh list is returned on each call.
    """
    return list(_shipped()[0])


def load_class_names() -> list[str]:
    """Short human-readable class names (first name before the comma), e.g. ``"tench"``.

    Index i is the name of class i in sorted-WNID order.
    """
    return list(_shipped()[1])


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(_shipped()[0])}


def wnid_to_index() -> dict[str, int]:
    """Mapping WNID -> class index (position in sorted WNID order), a fresh copy per call."""
    return dict(_wnid_index())


def read_synset_names(path: str | Path) -> dict[str, str]:
    """Read a ``LOC_synset_mapping.txt``-style file into ``{wnid: first name}``.

    Line format: ``WNID name[, other names]``. Line order is irrelevant for indexing.
    """
    p = Path(path)
    return dict(_parse_synset_lines(p.read_text(encoding="utf-8"), str(p)))


def read_synset_mapping(path: str | Path) -> list[str]:
    """Read a custom class list from a ``LOC_synset_mapping.txt``-style file.

    Each line is ``WNID name[, other names]``. The returned list is **sorted**: the class
    index of a WNID is its position in sorted order (torchvision convention), whatever the
    order of the lines in the file. Raises ``ValueError`` (listing every bad line) on
    malformed lines or duplicate WNIDs.
    """
    return sorted(read_synset_names(path))
