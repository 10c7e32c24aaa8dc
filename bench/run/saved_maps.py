"""Reading saved maps: one map file's content, and a finished `bench score` run's maps back.

:func:`read_map_file` is the one reader of ``.npy``/``.npz`` map files (formats in
:mod:`bench.run.score`); :func:`saved_gt_maps` gives a score run's GT-class maps back (for its
sweeps and replay), checked against the run's fingerprint. Kept apart from the scoring run itself so
that the sweeps of finished runs (:mod:`bench.run.sweeps`) read these maps without importing the
run that calls them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.run.results import RunDir
from bench.runtime import BenchError

__all__ = ["ScoreError", "check_map_array", "class_indices", "gt_map_index", "ranked_maps", "read_map_file", "files_fingerprint", "is_score_run", "saved_map_files", "saved_gt_maps"]


class ScoreError(BenchError, ValueError):
    """The maps cannot be scored as asked (no maps, mixed kinds, an ambiguous stem)."""


def check_map_array(arr: np.ndarray, what: str, ndim: int) -> np.ndarray:
    """``arr`` if it is a float16/32/64 map of ``ndim`` dimensions, none empty, all finite; else
    ValueError saying what is wrong (``what`` names it)."""
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"{what} has dtype {arr.dtype}; expected float16, float32 or float64")
    if arr.ndim != ndim or 0 in arr.shape:
        want = "(h, w)" if ndim == 2 else "(k, h, w)"
        raise ValueError(f"{what} has shape {arr.shape}; expected {want}")
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise ValueError(f"{what} has {bad} non-finite values (NaN/inf)")
    return arr


def class_indices(raw: np.ndarray, class_ids: Sequence[str], n: int) -> np.ndarray:
    """Class indices in ``[0, n)`` from integers or class-id strings (mapped through ``class_ids``);
    ValueError otherwise."""
    raw = np.asarray(raw).reshape(-1)
    if raw.dtype.kind in "US":
        index = {w: i for i, w in enumerate(class_ids)}
        unknown = [str(c) for c in raw if str(c) not in index]
        if unknown:
            raise ValueError(f"classes {unknown[:3]} are not class ids of the data set")
        return np.array([index[str(c)] for c in raw], dtype=np.int64)
    if raw.dtype.kind not in "iu":
        raise ValueError(f"classes has dtype {raw.dtype}; expected integers or class-id strings")
    out = raw.astype(np.int64)
    if out.size and (out.min() < 0 or out.max() >= n):
        raise ValueError(f"class indices must lie in [0, {n}), got [{out.min()}, {out.max()}]")
    return out


def read_map_file(data: bytes, name: str, class_ids: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """One saved map file's content: ``(classes, maps, scores)``.

    ``.npy`` (``name`` ends so): ``classes`` None (the GT class's map), ``maps`` ``(1, h, w)``,
    ``scores`` None. ``.npz``: ``classes`` ``(k,)`` class indices (class-id strings are mapped through
    ``class_ids``), ``maps`` ``(k, h, w)``, ``scores`` ``(k,)`` or None. Maps are float16/32/64 and
    finite.

    Raises:
        ValueError: any problem with the file, in words a failed record can carry.
    """
    if name.endswith(".npy"):
        if not data.startswith(b"\x93NUMPY"):  # e.g. text: say so, rather than numpy's advice to unpickle it
            raise ValueError("not a .npy array file (no NumPy header); save each map with numpy.save")
        return None, check_map_array(np.load(io.BytesIO(data), allow_pickle=False), "the map", 2)[None], None
    if not data.startswith(b"PK"):
        raise ValueError("not a .npz archive (no zip header); save ranked maps with numpy.savez")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        missing = [k for k in ("classes", "maps") if k not in npz.files]
        if missing:
            raise ValueError(f"missing arrays {missing} (an .npz needs 'classes' and 'maps', optionally 'scores')")
        return ranked_maps(npz["classes"], npz["maps"], npz["scores"] if "scores" in npz.files else None, class_ids)


def ranked_maps(classes: Any, maps: Any, scores: Any, class_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked ranked maps (an ``.npz`` file's arrays, or an in-memory item's): ``classes`` ``(k,)``
    class indices (class-id strings mapped through ``class_ids``), ``maps`` ``(k, h, w)`` finite
    floats, ``scores`` ``(k,)`` float64 or None. Raises ValueError in words a failed record can carry."""
    classes = class_indices(np.asarray(classes), class_ids, len(class_ids))
    maps = check_map_array(np.asarray(maps), "maps", 3)
    scores = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if maps.shape[0] != classes.shape[0] or (scores is not None and scores.shape[0] != classes.shape[0]):
        raise ValueError(f"{classes.shape[0]} classes, {maps.shape[0]} maps" + ("" if scores is None else f", {scores.shape[0]} scores") + ": expected one of each per entry")
    return classes, maps, scores


def gt_map_index(classes: np.ndarray, label: int, class_ids: Sequence[str]) -> int:
    """Index of the first map of the GT class ``label`` among ranked ``classes``; ValueError if none."""
    hits = np.flatnonzero(classes == label)
    if not hits.size:
        raise ValueError(f"no map of the GT class {class_ids[label]} (add it as an extra entry)")
    return int(hits[0])


def files_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over the sorted ``relative path<TAB>SHA-256 of the bytes`` lines of the map files read."""
    h = hashlib.sha256()
    for rel, digest in sorted(pairs):
        h.update(f"{rel}\t{digest}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- reading a score run's maps back


def is_score_run(manifest: dict[str, Any]) -> bool:
    """Whether a run manifest is a `bench score` run (its maps live in ``manifest['maps']['folder']``)."""
    return isinstance(manifest.get("maps"), dict) and manifest.get("model", {}).get("head") == "maps"


def saved_map_files(run: RunDir, manifest: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """A score run's maps folder and ``{image id: file path relative to it}`` (``map_files.csv``).

    Raises:
        ScoreError: the maps folder or the index file is gone.
    """
    folder = Path(manifest["maps"]["folder"])
    index_file = run.path / "map_files.csv"
    if not folder.is_dir() or not index_file.is_file():
        raise ScoreError(f"{run.path}: its maps folder {folder} (or map_files.csv) is gone; restore it to read the maps")
    return folder, dict(line.split(",", 1) for line in index_file.read_text().splitlines()[1:] if line)


def saved_gt_maps(run: RunDir) -> Iterator[tuple[int, np.ndarray]]:
    """``(record index, GT-class map (h, w) float32)`` for each scored image of a `bench score` run.

    Read from the run's maps folder through ``map_files.csv`` (``.npy``: the map; ``.npz``: the first
    entry of the GT class). After the last map the files read are checked against the manifest's
    fingerprint, so a consumer that writes its results after the loop never writes results of other maps.

    Raises:
        ScoreError: not a score run, its maps folder is gone, or the files changed since the run.
    """
    manifest = run.read_manifest()
    if not is_score_run(manifest):
        raise ScoreError(f"{run.path} is not a `bench score` run")
    folder, files = saved_map_files(run, manifest)
    class_ids = manifest["data"].get("class_ids") or []
    records = run.read_records()
    digests: list[tuple[str, str]] = []
    for i, row in enumerate(records.itertuples(index=False)):
        rel = files.get(row.image_id, "")
        if rel:
            try:
                data = (folder / rel).read_bytes()
            except OSError as exc:
                raise ScoreError(f"{run.path}: cannot read map {folder / rel} ({exc})") from None
            digests.append((rel, hashlib.sha256(data).hexdigest()))
        if row.status != "ok" or not rel:
            continue
        try:
            classes, maps, _scores = read_map_file(data, rel, class_ids)
        except ValueError as exc:
            raise ScoreError(f"{run.path}: map {folder / rel} no longer reads ({exc})") from None
        gt_map = maps[0] if classes is None else maps[int(np.flatnonzero(classes == int(row.label))[0])]
        yield i, np.asarray(gt_map, dtype=np.float32)
    if files_fingerprint(digests) != manifest["maps"].get("fingerprint"):
        raise ScoreError(f"{run.path}: the map files under {folder} changed since the run (fingerprint differs); rerun bench score")
