"""Threshold sweeps of a finished run, written beside it (``bench sweep``; the wsol_* suites' sweep).

``bench sweep RUN`` (MaxBoxAcc, MaxBoxAccV2, PxAP; wsolevaluation definitions, see
:mod:`bench.core.sweep`) reads the GT-class maps from the run's CAM cache (``bench run --save-cams``), so
the network is not run again; the maps are upsampled with the run's protocol to 224x224 (GT boxes
scaled by truncation, as wsolevaluation does) or to the original size (``--at original``).
Outputs: ``sweep.json`` (numbers, best thresholds) and ``sweep_curves.csv`` (BoxAcc per tau and delta).
PxAP uses ``<data root>/masks/<image id>.png`` when the data has masks (the generated data does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.core.cam import upsample_cam
from bench.run.cam_cache import read_cam_shard
from bench.data.dataset import Dataset
from bench.run.parallel import default_workers, map_in_processes
from bench.run.results import RunDir, atomic_write_bytes, atomic_write_json
from bench.run.rundata import RunDataError, run_dataset
from bench.run.saved_maps import is_score_run, saved_gt_maps

__all__ = [
    "RunMetricsError", "SweepItem", "SweepSettings", "WsolItem", "sweep_counts", "sweep_run", "wsol_sweep_counts",
    "wsol_sweep_run", "write_wsol_sweep", "load_run_data",
]  # fmt: skip


class RunMetricsError(ValueError):
    """A post-hoc metric cannot be computed for this run (no cache, no boxes, changed data)."""


def _gt_class_maps(run: RunDir, manifest: dict[str, Any], n_records: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(record index, GT-class map (h, w))`` of each scored image: from the CAM cache, or a
    `bench score` run's own map files. Raises RunMetricsError now (not on iteration) without either."""
    if manifest.get("protocol", {}).get("input", {}).get("pipeline") == "crop":
        raise RunMetricsError(
            f"{run.path}: a crop-suite run's maps are of the 224 centre crop; the sweeps score whole-image maps "
            "(run the model with a wsol_* or whole-image suite, or choose tau with --select-on)"
        )
    if is_score_run(manifest):
        return saved_gt_maps(run)
    if not manifest["settings"].get("save_cams"):
        raise RunMetricsError(f"{run.path} has no CAM cache; rerun it with `bench run ... --save-cams`")
    shard_size = manifest["settings"]["shard_size"]

    def cached() -> Iterator[tuple[int, np.ndarray]]:
        for shard in range((n_records + shard_size - 1) // shard_size):
            cache = read_cam_shard(run, shard)
            for row_index, cams in zip(cache["index"], cache["cams"]):
                yield int(row_index), cams[-1]

    return cached()


def load_run_data(run: RunDir, data_root: Path | str | None = None) -> Dataset:
    """The run's data set rebuilt from its manifest (``data_root``: a moved copy); refuses changed GT."""
    try:
        return run_dataset(run.read_manifest(), data_root=data_root, where=str(run.path))
    except RunDataError as exc:
        raise RunMetricsError(str(exc)) from None


def _mask(root: Path, image_id: str, size: tuple[int, int]) -> np.ndarray | None:
    """GT mask (0/1) at ``size`` = (H, W), nearest-neighbour, or None when the data has none."""
    path = root / "masks" / f"{image_id}.png"
    if not path.is_file():
        return None
    with Image.open(path) as img:
        mask = img.convert("L").resize((size[1], size[0]), Image.NEAREST)
    return (np.asarray(mask) > 127).astype(np.uint8)


@dataclass(frozen=True)
class SweepSettings:
    """What every map of one `bench sweep` shares (sent once per chunk to worker processes).

    ``thresholds``: the tau grid; ``at``: '224' or 'original'; ``upsample``: the run's upsampling
    mode; ``mask_root``: the data root holding ``masks/<image id>.png`` (or None: no PxAP).
    """

    thresholds: tuple[float, ...]
    at: str
    upsample: str
    mask_root: str | None


@dataclass(frozen=True)
class SweepItem:
    """One saved map: the GT-class CAM at feature resolution (as cached), the image's GT boxes in
    original pixels (inclusive xyxy) and its original ``(height, width)``."""

    image_id: str
    cam: np.ndarray
    boxes: np.ndarray
    size: tuple[int, int]


@lru_cache(maxsize=4)
def _accumulator(thresholds: tuple[float, ...]) -> Any:
    from bench.core.sweep import SweepAccumulator

    return SweepAccumulator(thresholds=thresholds)


def sweep_counts(settings: SweepSettings, item: SweepItem) -> Any:
    """One map's :class:`bench.core.sweep.ImageCounts`: upsample, scale the boxes, sweep, PxAP
    histograms. Pure (worker processes run it); the caller adds the counts in order."""
    from bench.core.sweep import scale_boxes

    height, width = item.size
    size = (224, 224) if settings.at == "224" else (height, width)
    cam = upsample_cam(torch.from_numpy(item.cam[None].astype(np.float32)), size, mode=settings.upsample)[0].numpy()
    boxes = scale_boxes(item.boxes, (width, height), (224, 224)) if settings.at == "224" else item.boxes
    mask = _mask(Path(settings.mask_root), item.image_id, size) if settings.mask_root is not None else None
    return _accumulator(settings.thresholds).count(cam, boxes, mask)[1]


def sweep_run(
    run: RunDir,
    *,
    step: float = 0.01,
    at: str = "224",
    progress: bool = True,
    data_root: Path | str | None = None,
    rules: str = "harness",
    workers: int | None = None,
) -> dict[str, Any]:
    """MaxBoxAcc / MaxBoxAccV2 / PxAP of a cached run; writes sweep.json and sweep_curves.csv.

    ``data_root``: the data root if it moved since the run (its GT fingerprint must match).
    ``rules='wsol'``: wsolevaluation's code exactly (:func:`wsol_sweep_run`, same files and keys).
    ``workers``: processes that sweep the maps (:func:`bench.run.parallel.map_in_processes`,
    streaming one cache shard at a time); None = every core for 1,000 maps or more, else 1
    (a pool takes seconds to start). Results do not depend on it."""
    from bench.core.sweep import SweepAccumulator, sweep_thresholds

    if rules == "wsol":
        return wsol_sweep_run(run, step=step, progress=progress, data_root=data_root, workers=workers)
    if at not in ("224", "original"):
        raise RunMetricsError(f"--at must be 224 or original, got {at!r}")
    if workers is not None and workers < 1:
        raise RunMetricsError(f"--workers must be at least 1, got {workers}")
    manifest = run.read_manifest()
    maps = _gt_class_maps(run, manifest, len(run.read_records()))
    valset = load_run_data(run, data_root)
    root = valset.root
    upsample = manifest["protocol"]["cam"]["upsample"]
    records = run.read_records()
    by_id = {g.image_id: g for g in valset.images}
    thresholds = sweep_thresholds(step)
    acc = SweepAccumulator(thresholds=thresholds)
    settings = SweepSettings(thresholds, at, upsample, str(root))
    image_ids = records["image_id"].to_numpy()
    heights = records["height"].to_numpy()
    widths = records["width"].to_numpy()
    n_maps = int((records["status"] == "ok").sum())

    def items() -> Iterator[SweepItem]:  # streamed: one cache shard (or saved map) at a time
        for row_index, gt_map in maps:
            r = int(row_index)
            gt = by_id[image_ids[r]]
            yield SweepItem(gt.image_id, gt_map, np.asarray(gt.boxes), (int(heights[r]), int(widths[r])))

    if workers is None:
        workers = default_workers() if n_maps >= 1000 else 1
    desc = f"sweep {run.path.name}" if progress else None
    for counts in map_in_processes(partial(sweep_counts, settings), items(), workers, desc, total=n_maps, unit="map"):
        acc.add_counts(counts)
    results = acc.results()
    curves = results.pop("curves")
    results.update(at=at, step=step, failed_or_uncached=int(len(records) - results["images"]))
    atomic_write_bytes(run.path / "sweep_curves.csv", curves.to_csv(index=False, lineterminator="\n").encode())
    atomic_write_json(run.path / "sweep.json", results)
    return results


@dataclass(frozen=True)
class WsolItem:
    """One cached map for the wsolevaluation-exact sweep: the GT-class CAM at feature resolution,
    the GT boxes (original pixels), the image's ``(width, height)`` and its mask files (or none)."""

    cam: np.ndarray
    boxes: np.ndarray
    image_size: tuple[int, int]
    masks: tuple[Path, ...] = ()
    ignore: Path | None = None


def wsol_sweep_counts(thresholds: tuple[float, ...], item: WsolItem) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """One map's wsolevaluation hits ``(largest, every)`` and PxAP histograms (or None). Pure:
    worker processes run it (OpenCV holds the GIL)."""
    from bench.core import wsol

    cam = item.cam.astype(np.float32)
    largest, every = wsol.cam_box_hits(cam, item.boxes, item.image_size, np.asarray(thresholds))
    hists = None
    if item.masks:
        scoremap = wsol.normalize_scoremap(wsol.resize_map(cam))
        hists = wsol.mask_histograms(scoremap, wsol.gt_mask(item.masks, item.ignore), np.asarray(thresholds))
    return largest, every, hists


def wsol_sweep_run(
    run: RunDir, *, step: float = 0.001, progress: bool = True, data_root: Path | str | None = None, workers: int | None = None
) -> dict[str, Any]:
    """wsolevaluation's BoxAcc curves / MaxBoxAcc(V2) and PxAP (:mod:`bench.core.wsol`) from the run's
    CAM cache (the GT-class map at feature resolution); writes sweep.json and sweep_curves.csv with
    the keys and columns of the harness's sweep, plus ``rules = 'wsol'``. ``workers`` as in
    :func:`sweep_run` (the OpenCV loop is slow: processes pay off from a few hundred maps)."""
    from bench.core import wsol

    if workers is not None and workers < 1:
        raise RunMetricsError(f"--workers must be at least 1, got {workers}")
    manifest = run.read_manifest()
    maps = _gt_class_maps(run, manifest, len(run.read_records()))
    valset = load_run_data(run, data_root)
    records = run.read_records()
    thresholds = wsol.wsol_thresholds(step)
    boxes = wsol.BoxAccumulator(thresholds)
    masks = wsol.MaskAccumulator(thresholds) if valset.has_masks else None
    image_ids = records["image_id"].to_numpy()
    heights = records["height"].to_numpy()
    widths = records["width"].to_numpy()
    n_maps = int((records["status"] == "ok").sum())

    def items() -> Iterator[WsolItem]:  # streamed: one cache shard (or saved map) at a time
        for row_index, gt_map in maps:
            r = int(row_index)
            gt = valset.get(image_ids[r])
            with_masks = masks is not None and bool(gt.masks)
            yield WsolItem(
                gt_map, np.asarray(gt.boxes), (int(widths[r]), int(heights[r])),
                tuple(gt.masks) if with_masks else (), gt.ignore if with_masks else None,
            )  # fmt: skip

    if workers is None:
        workers = default_workers() if n_maps >= 200 else 1
    desc = f"wsol sweep {run.path.name}" if progress else None
    fn = partial(wsol_sweep_counts, tuple(np.asarray(thresholds).tolist()))
    for largest, every, hists in map_in_processes(fn, items(), workers, desc, total=n_maps, unit="map"):
        boxes.add(largest, every)
        if masks is not None and hists is not None:
            masks.true_hist += hists[0]
            masks.false_hist += hists[1]
            masks.images += 1
    return write_wsol_sweep(run, boxes, masks, step, len(records))


def write_wsol_sweep(run: RunDir, boxes: Any, masks: Any, step: float, n_records: int) -> dict[str, Any]:
    """Write sweep.json and sweep_curves.csv of a wsolevaluation sweep from its accumulated counts
    (``boxes``: :class:`bench.core.wsol.BoxAccumulator`; ``masks``: a MaskAccumulator or None; ``n_records``:
    the run's images); returns the results. :func:`wsol_sweep_run` and `bench score`'s sweep fed
    during its records pass both end here."""
    results = boxes.results()
    curves = results.pop("curves")
    results.update(pxap=masks.pxap() if masks is not None and masks.images else None, pxap_images=masks.images if masks is not None else 0)
    results.update(at="224", step=step, rules="wsol", failed_or_uncached=int(n_records - results["images"]))
    atomic_write_bytes(run.path / "sweep_curves.csv", curves.to_csv(index=False, lineterminator="\n").encode())
    atomic_write_json(run.path / "sweep.json", results)
    return results
