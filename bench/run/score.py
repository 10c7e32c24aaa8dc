"""`bench score MAPS --data DIR --suite S`: score localization maps made elsewhere into a normal run.

The maps come from any method (wsolevaluation's ``evaluation.py`` is used the same way); the suite
supplies the box rule, thresholds, guesses and metrics, and the result is a run folder like
`bench run`'s (manifest, records, summary) that ``table``, ``compare``, ``report``, ``sweep``...
read.

**Files**, one per image, anywhere under ``MAPS``. For an image at ``<root>/val/X.JPEG`` the
candidates, in order, are: a relative path of the image (``val/X.JPEG``, then ``X.JPEG``: every
tail of the path below the data root, longest first) plus ``.npy`` / ``.npz``
(wsolevaluation's naming ``val/X.JPEG.npy``), the same with the image extension replaced
(``val/X.npy``), then any file whose stem is the image id (``X.npy``, ``X.npz``, ``X.JPEG.npy``,
anywhere). Two files with that stem, when the stem decides, is an error naming both.

* ``.npy``: one 2-D ``(h, w)`` map of the GT class. Only GT-known localization, the IoU statistics
  and sweeps are defined; the record's guess columns are empty, the summary's top-k keys are None
  with ``gt_class_maps_only: true`` and a note, and tables show ``"n/a (GT-class maps only)"``.
* ``.npz``: ``classes`` (k class indices, or WNIDs as strings) in rank order, ``maps`` (k, h, w),
  optional ``scores`` (k,). The first five entries are the guesses (the protocol needs the first
  ``ranks_needed``); the GT-known map is the first entry of the GT class (a sixth entry may carry it).
  Without ``scores`` the record's ``top5_scores`` is empty.

Maps of any size are resized to the image's original size by the suite's ``upsample`` rule (a map
already at that size is unchanged: ``align_corners=False`` interpolation to the same size is the
identity); float16/32/64 are accepted and kept (float64 maps are resized in float64).

**Every image is accounted for**: a missing, unreadable, non-finite or wrongly shaped map (or an
unreadable image) is a ``failed`` record whose ``error`` says why; map files that match no image
are counted (``unmatched_maps``) and the first :data:`MAX_NAMED` named (``unmatched_examples``) in
``summary.json``. A folder must hold one kind of map (all ``.npy`` or all ``.npz``).

**Manifest**: the maps folder, the file kind, and a fingerprint of the files scored (SHA-256 over
the sorted ``relative path, SHA-256 of the bytes`` lines); ``map_files.csv`` lists, per image, the
file used (relative to the maps folder; empty when missing), so replay can find each image's map.

The per-image work (:func:`score_image`) is a pure function of a picklable task, run inline or on a
process pool (``workers``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.core.protocol import Protocol, load_protocol
from bench.core.scoring import failed_record, image_record
from bench.data.dataset import Dataset, GTImage
from bench.data.open import open_dataset
from bench.extras import needed_extras, require_extras
from bench.data.transforms import MAX_PIXELS, ImageDecodeError, check_image_file
from bench.run.manifest import RunConflict, data_section, new_manifest
from bench.run.results import RunDir, atomic_write_bytes
from bench.run.saved_maps import ScoreError, gt_map_index, is_score_run, read_map_file, saved_gt_maps, saved_map_files
from bench.run.saved_maps import files_fingerprint as _fingerprint
from bench.run.writer import GT_ONLY, RunWriter, mark_gt_class_maps_only

__all__ = [
    "MAP_SUFFIXES",
    "GT_ONLY",
    "MAX_NAMED",
    "ScoreError",
    "MapIndex",
    "ScoreContext",
    "ScoreTask",
    "index_maps",
    "read_map_file",
    "saved_map_files",
    "score_image",
    "score_folder",
    "score_run_dir",
    "write_maps",
    "is_score_run",
    "saved_gt_maps",
]

MAP_SUFFIXES = (".npy", ".npz")
#: Unmatched map files named in the summary (all are counted).
MAX_NAMED = 20
_IMAGE_EXTS = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


# --------------------------------------------------------------------------- finding the files


def _stem(rel: str) -> str:
    """Image id a map file names: ``a/X.JPEG.npy`` -> ``X``; ``a/X.npz`` -> ``X``."""
    name = rel.rsplit("/", 1)[-1]
    base, ext = os.path.splitext(name)
    inner, inner_ext = os.path.splitext(base)
    return inner if inner_ext.lower() in _IMAGE_EXTS else base


@dataclass(frozen=True)
class MapIndex:
    """Which map file belongs to which image.

    Attributes:
        folder: the maps folder (absolute).
        files: image_id -> path relative to ``folder`` (posix), for images that have a map.
        unmatched: relative paths of map files no image claimed, sorted.
        kind: ``'npy'`` (GT-class maps) or ``'npz'`` (ranked classes).
    """

    folder: Path
    files: dict[str, str]
    unmatched: tuple[str, ...]
    kind: str


def index_maps(folder: str | os.PathLike[str], valset: Dataset) -> MapIndex:
    """Match the ``.npy``/``.npz`` files under ``folder`` to the images of ``valset`` (module docstring rules).

    Raises:
        ScoreError: no map files, both kinds present, or an image's stem names two files.
    """
    root = Path(folder).expanduser().absolute()
    if not root.is_dir():
        raise ScoreError(f"maps folder {root} does not exist (give the folder holding the .npy/.npz maps)")
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in MAP_SUFFIXES and p.is_file())
    if not rels:
        raise ScoreError(f"no .npy or .npz map files under {root}")
    kinds = {r.rsplit(".", 1)[-1] for r in rels}
    if len(kinds) > 1:
        n_npy = sum(r.endswith(".npy") for r in rels)
        raise ScoreError(
            f"{root} holds both .npy ({n_npy}) and .npz ({len(rels) - n_npy}) maps; one run scores one kind: "
            "put GT-class maps (.npy) and ranked maps (.npz) in separate folders"
        )
    available = set(rels)
    by_stem: dict[str, list[str]] = {}
    for r in rels:
        by_stem.setdefault(_stem(r), []).append(r)
    data_root = valset.root.absolute()
    files: dict[str, str] = {}
    for gt in valset.images:
        path = Path(gt.path)
        try:
            parts = path.relative_to(data_root).parts
        except ValueError:
            parts = path.parts[-2:]
        found = None
        for start in range(len(parts)):
            tail = "/".join(parts[start:])
            no_ext = "/".join((*parts[start:-1], os.path.splitext(parts[-1])[0]))
            for key in (tail + ".npy", tail + ".npz", no_ext + ".npy", no_ext + ".npz"):
                if key in available:
                    found = key
                    break
            if found:
                break
        if found is None:
            same = by_stem.get(gt.image_id, [])
            if len(same) > 1:
                raise ScoreError(
                    f"image {gt.image_id}: several map files have its name under {root}: {', '.join(same[:5])}; "
                    "name maps by the image's relative path (val/X.JPEG.npy) or keep one per image"
                )
            found = same[0] if same else None
        if found is not None:
            files[gt.image_id] = found
    used = set(files.values())
    return MapIndex(root, files, tuple(r for r in rels if r not in used), kinds.pop())


# --------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class ScoreContext:
    """What every image's scoring needs besides its own task (picklable)."""

    protocol: Protocol
    class_ids: tuple[str, ...]
    folder: Path


@dataclass(frozen=True)
class ScoreTask:
    """One image: its ground truth and its map file (relative to the maps folder, or None)."""

    gt: GTImage
    blacklisted: bool
    map_file: str | None


def _image_size(gt: GTImage) -> tuple[int, int]:
    """Original ``(H, W)``: from the image file's header (pixels are not decoded) when the file is
    there, else from the size the annotation states (``GTImage.size``: wsolevaluation's
    ``image_sizes.txt``, VOC ``<size>``), so saved maps score without the images.

    Raises:
        ImageDecodeError: no file and no stated size, or an unreadable / oversized image.
    """
    path = Path(gt.path)
    if gt.size is not None and not os.path.lexists(path):
        width, height = gt.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(f"image of {width}x{height} pixels (annotation) exceeds the {MAX_PIXELS}-pixel limit")
        return height, width
    if not os.path.lexists(path):
        raise ImageDecodeError(
            f"no image file at {path} and the annotations state no size for it (wsolevaluation image_sizes.txt, "
            "VOC <size>); add the image or its size"
        )
    check_image_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Exception as exc:
        raise ImageDecodeError(f"cannot read the image header: {type(exc).__name__}") from None
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"image of {width}x{height} pixels exceeds the {MAX_PIXELS}-pixel limit")
    return height, width


def score_image(context: ScoreContext, task: ScoreTask) -> tuple[dict[str, Any], str | None]:
    """The record of one image from its map file, and the file's SHA-256 (None if no file was read).

    Never raises for a bad map or image: those become ``failed`` records with the reason.
    """
    record, digest, _gt_map = _score_one(context, task)
    return record, digest


def score_and_sweep(context: ScoreContext, thresholds: tuple[float, ...], task: ScoreTask) -> tuple[dict[str, Any], str | None, Any]:
    """:func:`score_image` plus, for a scored image, its wsolevaluation hit arrays ``(largest, every)``
    (:func:`bench.run.sweeps.wsol_sweep_counts` of the GT-class map, boxes-only data) from the same
    read of the file; None for a failed record. The wsol_* suites' sweep is fed from these during the
    records pass, so each map is read and hashed once."""
    from bench.run.sweeps import WsolItem, wsol_sweep_counts

    record, digest, gt_map = _score_one(context, task)
    if gt_map is None or record.get("status") != "ok":
        return record, digest, None
    largest, every, _hists = wsol_sweep_counts(thresholds, WsolItem(gt_map, np.asarray(task.gt.boxes),
                                                                     (int(record["width"]), int(record["height"]))))  # fmt: skip
    return record, digest, (largest, every)


def _score_one(context: ScoreContext, task: ScoreTask) -> tuple[dict[str, Any], str | None, np.ndarray | None]:
    """:func:`score_image`'s record and digest, and the GT-class map ``(h, w)`` float32 as the sweeps
    read it (:func:`bench.run.saved_maps.saved_gt_maps`), None when the image failed before it was read."""
    gt, blacklisted = task.gt, task.blacklisted
    if task.map_file is None:
        return failed_record(gt, blacklisted, "no map file for this image under the maps folder"), None, None
    # The map file is read (and hashed) even when the image fails: the run's fingerprint covers every
    # matched file, as the readers of its maps (saved_gt_maps) check it.
    data, read_error = b"", None
    try:
        data = (context.folder / task.map_file).read_bytes()
    except OSError as exc:
        read_error = exc
    digest = None if read_error is not None else hashlib.sha256(data).hexdigest()
    try:
        size = _image_size(gt)
    except ImageDecodeError as exc:
        return failed_record(gt, blacklisted, f"image: {exc}"), digest, None
    try:
        if read_error is not None:
            raise read_error
        classes, maps, scores = read_map_file(data, task.map_file, context.class_ids)
        if classes is None:
            record = image_record(context.protocol, gt, blacklisted, size, None, None, maps, [gt.label])
            return record, digest, np.asarray(maps[0], dtype=np.float32)
        k = context.protocol.ranks_needed
        if classes.shape[0] < k:
            raise ValueError(f"{classes.shape[0]} ranked classes; the suite {context.protocol.name} needs at least {k}")
        gt_index = gt_map_index(classes, gt.label, context.class_ids)
        # guesses: the first five entries; GT-known: the first entry of the GT class
        record = image_record(context.protocol, gt, blacklisted, size, classes[:5], None if scores is None else scores[:5], maps, classes)
        return record, digest, np.asarray(maps[gt_index], dtype=np.float32)
    except Exception as exc:  # unreadable file, wrong shape/dtype, NaN, bad classes: a failed record
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return failed_record(gt, blacklisted, f"map {task.map_file}: {reason}"), digest, None


# --------------------------------------------------------------------------- the run


def _spawn_can_import_main() -> bool:
    """Whether a spawned worker can re-import ``__main__`` (a script file, a ``-m`` module, or none at all)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or getattr(main, "__spec__", None) is not None or os.path.isfile(path)


def _results(context: ScoreContext, tasks: Sequence[ScoreTask], workers: int, thresholds: tuple[float, ...] | None = None) -> Iterator[tuple[Any, ...]]:
    """Per task, in order: ``score_image``'s ``(record, digest)``, or with ``thresholds``
    :func:`score_and_sweep`'s ``(record, digest, hits)``."""
    fn = partial(score_image, context) if thresholds is None else partial(score_and_sweep, context, thresholds)
    if workers > 1 and not _spawn_can_import_main():
        warnings.warn(
            "bench score: worker processes re-import the calling script, which is not a file here (stdin?); "
            "scoring inline instead (the same records)",
            stacklevel=3,
        )
        workers = 0
    if workers <= 1:
        yield from map(fn, tasks)
        return
    chunk = max(1, min(64, len(tasks) // (workers * 4) or 1))
    # 'spawn': a forked child of a process whose torch already started its OpenMP threads can hang in
    # its first parallel region; each worker then runs torch on one thread (the pool is the parallelism).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.map(fn, tasks, chunksize=chunk)


def score_run_dir(maps: str | os.PathLike[str], protocol: Protocol, out: str | os.PathLike[str] | None = None, name: str | None = None) -> RunDir:
    """The run folder of a score: ``OUT/<suite>/<name>``, ``name`` defaulting to ``maps-<maps folder name>``."""
    run_name = name or f"maps-{Path(maps).expanduser().absolute().name}"
    return RunDir(Path(out if out is not None else "results") / protocol.name / run_name)


def score_folder(
    maps: str | os.PathLike[str],
    data: str | os.PathLike[str],
    suite: str | os.PathLike[str] = "ilsvrc_loc",
    out: str | os.PathLike[str] | None = None,
    *,
    run: RunDir | None = None,
    name: str | None = None,
    gt_layout: str = "auto",
    images: str | os.PathLike[str] | None = None,
    split: str | None = None,
    metadata: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
    workers: int = 0,
    shard_size: int = 1000,
    progress: bool = True,
    command: Sequence[str] = (),
    box_threshold: float | None = None,
) -> RunDir:
    """Score the maps under ``maps`` on the data under ``data`` with ``suite``; returns the run folder.

    Image files are needed only for images whose size the annotations do not state (module docstring).
    The folder is written by :class:`bench.run.writer.RunWriter`: the same command again finds the run
    complete and writes nothing; an interrupted score resumes at its first unfinished shard; other
    maps (other files matched, or a scored file whose content changed) are refused, naming them.

    Args:
        maps: the maps folder (module docstring for names and formats).
        data: the data root (as for `bench run`).
        suite: suite name or .toml path.
        out: results root; the run goes to ``OUT/<suite>/<name>`` (default name: ``maps-<folder name>``).
        run: the run folder itself (overrides ``out``/``name``).
        workers: processes for the per-image work (0 or 1: inline).
        shard_size: images per records shard.
        box_threshold: the box threshold of a top5 suite (``bench score --box-threshold``; crop suites:
            tau on the min-max map, default the suite's ``guesses.threshold``), recorded in the protocol.

    Raises:
        ScoreError: see :func:`index_maps`. DataError / ProtocolError: bad data or suite.
        RunConflict: the run folder holds another run (other maps included), or another process is writing to it.
    """
    protocol = load_protocol(suite)
    require_extras(needed_extras(protocols=[protocol]))  # before any file is written
    if box_threshold is not None:
        protocol = protocol.with_threshold(box_threshold)
    root = Path(data)
    blacklist = (root / protocol.blacklist) if protocol.blacklist else None
    valset = open_dataset(root, layout=gt_layout, images=images, split=split, blacklist=blacklist, metadata=metadata, masks=masks,
                          images_required=False)  # fmt: skip
    index = index_maps(maps, valset)
    if run is None:
        run = score_run_dir(maps, protocol, out, name)
    tasks = [ScoreTask(g, g.image_id in valset.blacklisted, index.files.get(g.image_id)) for g in valset.images]
    identity = {"protocol_hash": protocol.hash, "model": run.path.name, "maps_folder": str(index.folder),
                "data_fingerprint": valset.fingerprint(), "images": len(tasks), "shard_size": shard_size}  # fmt: skip
    make_manifest = partial(_score_manifest, protocol, valset, index, run, identity, workers, shard_size, command)
    with RunWriter.open(run, identity, make_manifest, n_images=len(tasks), shard_size=shard_size) as writer:
        _refuse_other_maps(run, index, tasks)
        # wsol_* suites on boxes-only data: the sweep's hits come from the records pass (one read per map),
        # kept per shard beside its records; data with masks (PxAP) sweeps the finished run instead
        feed = protocol.wsol_evaluation and not valset.has_masks
        if not writer.complete:
            _score_shards(writer, protocol, valset, index, tasks, workers, progress, feed)
            writer.finish(
                manifest_update=lambda m: m["maps"].update(fingerprint=_fingerprint(_all_digests(writer, tasks, index.folder))),
                summary_update=partial(_score_summary_keys, index),
            )
        if protocol.wsol_evaluation:  # wsol_* suites: wsolevaluation's sweeps of the saved GT-class maps, as `bench run` does
            from bench.run.wsol_suite import sweep_finished_run

            counts = _fed_sweep(writer, protocol) if feed else None
            sweep_finished_run(protocol, run, progress=progress, counts=counts)  # an up-to-date sweep is kept as it is
    return run


def _sweep_name(shard: int) -> str:
    """A shard's wsolevaluation hit counts (wsol_* suites), beside its records: ``records/shard-00000.wsol.json``."""
    return f"shard-{shard:05d}.wsol.json"


def _fed_sweep(writer: RunWriter, protocol: Protocol) -> Any:
    """The run's :class:`bench.core.wsol.BoxAccumulator` summed from its shards' hit counts, or None
    when a shard has none at the suite's step (then the finished run's maps are swept again)."""
    from bench.core import wsol

    thresholds = wsol.wsol_thresholds(protocol.wsol_step)
    total = wsol.BoxAccumulator(thresholds)
    for k in range(writer.n_shards):
        path = writer.run.shard_dir / _sweep_name(k)
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        largest, every = np.asarray(held["largest"], dtype=np.int64), np.asarray(held["every"], dtype=np.int64)
        if held.get("step") != protocol.wsol_step or largest.shape != total.largest.shape or every.shape != total.every.shape:
            return None
        total.largest += largest
        total.every += every
        total.images += int(held["images"])
    return total


def _score_manifest(protocol: Protocol, valset: Dataset, index: MapIndex, run: RunDir, identity: dict[str, Any], workers: int,
                    shard_size: int, command: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """A new score run's manifest (the maps' fingerprint is set when the run finishes)."""
    return new_manifest(
        identity=identity,
        protocol=protocol,
        model={
            "name": run.path.name, "paper_name": None, "family": f"{run.path.name}-maps", "head": "maps",
            "input_size": None, "grid": None, "weights_source": "maps", "weights_path": None, "weights_sha256": None,
        },
        maps={"folder": str(index.folder), "kind": index.kind, "gt_class_only": index.kind == "npy", "files_matched": len(index.files),
              "unmatched": len(index.unmatched), "index_file": "map_files.csv", "fingerprint": None},
        data=data_section(valset, len(valset.images)),  # the engine's data section, so bench.run.rundata reopens score runs too
        settings={"workers": workers, "shard_size": shard_size, "save_cams": False, "seed": None, "max_pixels": MAX_PIXELS},
        command=command,
    )  # fmt: skip


def _map_files_csv(tasks: Sequence[ScoreTask]) -> bytes:
    """``map_files.csv``: per image (data-set order), the map file used, relative to the maps folder."""
    lines = ["image_id,map_file"] + [f"{t.gt.image_id},{t.map_file or ''}" for t in tasks]
    return ("\n".join(lines) + "\n").encode()


def _refuse_other_maps(run: RunDir, index: MapIndex, tasks: Sequence[ScoreTask]) -> None:
    """Write ``map_files.csv`` for a new run; for an existing one, refuse other maps than it scored:
    another file matched to an image, or a scored file whose bytes changed (files whose size and
    modification time are unchanged are taken as unchanged; the others are hashed again)."""
    path = run.path / "map_files.csv"
    listing = _map_files_csv(tasks)
    if not path.is_file():
        atomic_write_bytes(path, listing)
        return
    before = dict(line.split(",", 1) for line in path.read_text().splitlines()[1:] if line)
    now = {t.gt.image_id: t.map_file or "" for t in tasks}
    differ = [i for i in now if before.get(i, "") != now[i]]
    changed = [rel for k in run.done_shards() for rel, digest, size, mtime in _side_entries(run, k)
               if not _same_file(index.folder / rel, digest, size, mtime)]  # fmt: skip
    if differ or changed:
        what = []
        if differ:
            what.append(f"{len(differ)} image(s) match another map file than in that run ({', '.join(differ[:3])}"
                        + (" ..." if len(differ) > 3 else "") + ")")  # fmt: skip
        if changed:
            what.append(f"{len(changed)} scored map file(s) changed since ({', '.join(changed[:3])}" + (" ..." if len(changed) > 3 else "") + ")")
        raise RunConflict(
            f"{run.path} already holds a score of other maps: {'; '.join(what)}. Give this score another name "
            "(--name NAME) or results root (--out DIR), or delete that folder to score again"
        )


def _side_name(shard: int) -> str:
    """A shard's map digests, beside its records: ``records/shard-00000.maps.json``."""
    return f"shard-{shard:05d}.maps.json"


def _side_entries(run: RunDir, shard: int) -> list[tuple[str, str, int, int]]:
    """``(map file, SHA-256, size, mtime_ns)`` of the files a finished shard read (empty for shards
    written before the digests were kept)."""
    path = run.shard_dir / _side_name(shard)
    if not path.is_file():
        return []
    return [(str(r), str(d), int(n), int(t)) for r, d, n, t in json.loads(path.read_text())["files"]]


def _same_file(path: Path, digest: str, size: int, mtime_ns: int) -> bool:
    try:
        st = path.stat()
        if st.st_size == size and st.st_mtime_ns == mtime_ns:
            return True
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def _all_digests(writer: RunWriter, tasks: Sequence[ScoreTask], folder: Path) -> list[tuple[str, str]]:
    """``(map file, SHA-256)`` of every file the run read, from the shards' digest files (shards without
    one, written before they were kept, are hashed now)."""
    pairs: list[tuple[str, str]] = []
    for k in range(writer.n_shards):
        if (writer.run.shard_dir / _side_name(k)).is_file():
            pairs.extend((rel, digest) for rel, digest, _n, _t in _side_entries(writer.run, k))
            continue
        for i in writer.shard_range(k):  # pragma: no cover - run folders of older versions
            rel = tasks[i].map_file
            if rel is not None and (folder / rel).is_file():
                pairs.append((rel, hashlib.sha256((folder / rel).read_bytes()).hexdigest()))
    return pairs


def _score_shards(writer: RunWriter, protocol: Protocol, valset: Dataset, index: MapIndex, tasks: Sequence[ScoreTask],
                  workers: int, progress: bool, feed: bool = False) -> None:  # fmt: skip
    """Score this run's unfinished shards; each shard's records go to ``writer`` with the digests of
    the map files it read (``records/shard-K.maps.json``: file, SHA-256, size, mtime) and, with
    ``feed`` (wsol_* suites, boxes-only data), its summed wsolevaluation hit counts
    (``records/shard-K.wsol.json``: step, images, largest, every; see :func:`_fed_sweep`)."""
    from bench.core import wsol

    context = ScoreContext(protocol, valset.class_ids, index.folder)
    thresholds = tuple(np.asarray(wsol.wsol_thresholds(protocol.wsol_step)).tolist()) if feed else None
    todo = [tasks[i] for i in writer.indices()]
    shards = iter(writer.todo)
    shard, records, files = next(shards, None), [], []
    counts = wsol.BoxAccumulator(np.asarray(thresholds)) if feed else None
    with tqdm(total=len(todo), desc=f"score {index.folder.name} on {protocol.name}", unit="img", disable=not progress) as bar:
        for task, (record, digest, *hits) in zip(todo, _results(context, todo, workers, thresholds)):
            if digest is not None and task.map_file is not None:
                st = (index.folder / task.map_file).stat()
                files.append([task.map_file, digest, st.st_size, st.st_mtime_ns])
            if counts is not None and hits[0] is not None:
                counts.add(*hits[0])
            records.append(record)
            bar.update(1)
            if shard is not None and len(records) == len(writer.shard_range(shard)):
                side = {_side_name(shard): (json.dumps({"files": files}) + "\n").encode()}
                if counts is not None:
                    side[_sweep_name(shard)] = (json.dumps({"step": protocol.wsol_step, "images": counts.images, "largest": counts.largest.tolist(),
                                                            "every": counts.every.tolist()}) + "\n").encode()  # fmt: skip
                    counts = wsol.BoxAccumulator(np.asarray(thresholds))
                writer.write_shard(shard, records, side_files=side)
                shard, records, files = next(shards, None), [], []


def _score_summary_keys(index: MapIndex, summary: dict[str, Any], _records: Any) -> None:
    """What a score run's summary adds: top-k keys None for GT-class maps, the unmatched map files."""
    if index.kind == "npy":  # no ranked classes: top-k metrics are undefined (None), and the summary says why
        mark_gt_class_maps_only(summary, ".npy maps carry no ranked classes, so top-k classification and localization are not defined")
    summary["unmatched_maps"] = len(index.unmatched)
    summary["unmatched_examples"] = list(index.unmatched[:MAX_NAMED])


# --------------------------------------------------------------------------- in-memory maps -> files


def write_maps(items: Iterable[Sequence[Any]], folder: str | os.PathLike[str]) -> Path:
    """Write ``(image_id, classes, maps[, scores])`` items as ``folder/<image_id>.npz`` (``.npy`` when ``classes`` is None).

    ``classes`` None: ``maps`` is the GT class's ``(h, w)`` map. Else ``classes`` (k,) indices or
    class ids, ``maps`` (k, h, w), ``scores`` (k,) optional. Arrays are written as given (dtype kept).
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for item in items:
        if len(item) not in (3, 4):
            raise ScoreError(f"each item must be (image_id, classes, maps[, scores]), got {len(item)} fields")
        image_id, classes, maps = str(item[0]), item[1], item[2]
        if "/" in image_id or image_id in ("", ".", ".."):
            raise ScoreError(f"image id {image_id!r} is not a plain file stem")
        as_np = (lambda a: a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
        if classes is None:
            np.save(root / f"{image_id}.npy", as_np(maps), allow_pickle=False)
            continue
        arrays = {"classes": as_np(classes), "maps": as_np(maps)}
        if len(item) == 4 and item[3] is not None:
            arrays["scores"] = as_np(item[3])
        np.savez(root / f"{image_id}.npz", **arrays)
    return root
