"""Post-hoc metrics of a finished run, written beside it: threshold sweeps and COCO box AP.

``bench sweep RUN`` (MaxBoxAcc, MaxBoxAccV2, PxAP; wsolevaluation definitions, see
:mod:`bench.core.sweep`) reads the GT-class maps from the run's CAM cache (``bench run --save-cams``), so
the network is not run again; the maps are upsampled with the run's protocol to 224x224 (GT boxes
scaled by truncation, as wsolevaluation does) or to the original size (``--at original``).
Outputs: ``sweep.json`` (numbers, best thresholds) and ``sweep_curves.csv`` (BoxAcc per tau and delta).
PxAP uses ``<data root>/masks/<image id>.png`` when the data has masks (the generated data does).

``bench export --coco RUN`` writes the run's guesses and GT as COCO JSON (``coco.json``) and box AP
from pycocotools' COCOeval (``coco_eval.json``); ``bench table`` shows ``box_ap`` when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from bench.core.cam import upsample_cam
from bench.run.cam_cache import read_cam_shard
from bench.data.ilsvrc import ValSet
from bench.run.results import RunDir, atomic_write_bytes, atomic_write_json
from bench.run.rundata import RunDataError, run_dataset

__all__ = ["RunMetricsError", "sweep_run", "coco_export", "load_run_data"]


class RunMetricsError(ValueError):
    """A post-hoc metric cannot be computed for this run (no cache, no boxes, changed data)."""


def load_run_data(run: RunDir, data_root: Path | str | None = None) -> ValSet:
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


def sweep_run(
    run: RunDir, *, step: float = 0.01, at: str = "224", progress: bool = True, data_root: Path | str | None = None
) -> dict[str, Any]:
    """MaxBoxAcc / MaxBoxAccV2 / PxAP of a cached run; writes sweep.json and sweep_curves.csv.

    ``data_root``: the data root if it moved since the run (its GT fingerprint must match)."""
    from bench.core.sweep import SweepAccumulator, scale_boxes

    if at not in ("224", "original"):
        raise RunMetricsError(f"--at must be 224 or original, got {at!r}")
    manifest = run.read_manifest()
    if not manifest["settings"].get("save_cams"):
        raise RunMetricsError(f"{run.path} has no CAM cache; rerun it with `bench run ... --save-cams`")
    valset = load_run_data(run, data_root)
    root = valset.root
    upsample = manifest["protocol"]["cam"]["upsample"]
    records = run.read_records()
    shard_size = manifest["settings"]["shard_size"]
    by_id = {g.image_id: g for g in valset.images}
    acc = SweepAccumulator(thresholds=np.round(np.arange(0.0, 1.0, step), 10))
    bar = tqdm(total=len(records), desc=f"sweep {run.path.name}", unit="map", disable=not progress)
    for shard in range((len(records) + shard_size - 1) // shard_size):
        cache = read_cam_shard(run, shard)
        for row_index, cams in zip(cache["index"], cache["cams"]):
            row = records.iloc[int(row_index)]
            gt = by_id[row["image_id"]]
            height, width = int(row["height"]), int(row["width"])
            size = (224, 224) if at == "224" else (height, width)
            cam = upsample_cam(torch.from_numpy(cams[-1:].astype(np.float32)), size, mode=upsample)[0].numpy()
            boxes = scale_boxes(gt.boxes, (width, height), (224, 224)) if at == "224" else gt.boxes
            acc.add(cam, boxes, _mask(root, gt.image_id, size))
            bar.update(1)
    bar.close()
    results = acc.results()
    curves = results.pop("curves")
    results.update(at=at, step=step, failed_or_uncached=int(len(records) - results["images"]))
    atomic_write_bytes(run.path / "sweep_curves.csv", curves.to_csv(index=False, lineterminator="\n").encode())
    atomic_write_json(run.path / "sweep.json", _jsonable(results))
    return results


def coco_export(run: RunDir, data_root: Path | str | None = None) -> dict[str, Any]:
    """Write coco.json (GT + detections) and coco_eval.json (AP, AP50, AP75) into the run folder."""
    from bench.analysis.coco import coco_eval, coco_json

    valset = load_run_data(run, data_root)
    records = run.read_records()
    if not (records["guess_boxes"] != "").any():
        raise RunMetricsError(f"{run.path}: the run has no boxes (fully connected head with CAM); nothing to export")
    gt = {g.image_id: (g.label, np.asarray(g.boxes)) for g in valset.images}
    n_classes = len(valset.wnids)
    atomic_write_json(run.path / "coco.json", _jsonable(coco_json(records, gt, n_classes)))
    result = coco_eval(records, gt, n_classes)
    atomic_write_json(run.path / "coco_eval.json", _jsonable(result))
    return result


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def read_box_ap(run_path: Path) -> float | None:
    path = Path(run_path) / "coco_eval.json"
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["AP"])
