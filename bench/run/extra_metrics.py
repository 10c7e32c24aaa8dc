"""The saliency scores on a single-label run (ILSVRC, CUB, OpenImages): ``bench run --extra-metrics``.

After a run, the GT class's map of every decoded image is served again by
:class:`bench.run.replay.RunReplay` (the run's map cache with ``--save-cams``, else the network
re-run as the run ran it, weights checked) at the original image size, and scored against the
image's GT region by the rules of :mod:`bench.core.saliency`: the pointing game (the GT class is the
image's one pair; 15 px), the energy pointing game and Quantus's localisation metrics. Region: the
union of the GT boxes (:func:`bench.core.saliency.boxes_to_mask`); for mask data sets (OpenImages)
the union of the instance masks (grey > 127.5 of 255, as the harness reads them; an ignore region
has no meaning for these scores and is not used).

Written beside the run's files, which stay byte-identical: ``saliency.csv.gz`` (per image:
``image_id, status, reason, point_x, point_y, hit`` and the six scores, the pointing records'
columns) and ``saliency.json`` (the pointing summary keys, from the metric objects). The engine is
not touched: the same function serves any finished run folder.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bench.core.saliency import boxes_to_mask
from bench.metrics.pointing import PointingGame
from bench.run.pointing import SCORE_METRICS, pair_scores, read_pointing_records
from bench.run.results import RunDir, atomic_write_bytes, atomic_write_json

__all__ = ["EXTRA_COLUMNS", "SALIENCY_POINTING", "gt_region", "score_run_saliency"]

EXTRA_COLUMNS = ("image_id", "class_id", "status", "reason", "point_x", "point_y", "hit", *(m.key for m in SCORE_METRICS))
#: The pointing game's tolerance (px) and the top-k intersection's k on single-label runs (TorchRay's and Quantus's defaults).
SALIENCY_POINTING = {"tolerance": 15, "top_k": 1000}


def gt_region(gt: Any, size: tuple[int, int]) -> np.ndarray:
    """An image's GT region at its original ``size = (H, W)``: union of masks (if any) else of boxes."""
    if getattr(gt, "masks", ()):
        from bench.data.open import load_mask

        out = np.zeros(size, dtype=bool)
        for path in gt.masks:
            m = load_mask(path) > 127.5
            if m.shape != tuple(size):
                m = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None].float(), size=size, mode="nearest")[0, 0].numpy() > 0.5
            out |= m
        return out
    return boxes_to_mask(gt.boxes, size).numpy()


def score_run_saliency(run_dir: Path | str, *, device: str = "cpu", data_root: Path | str | None = None, progress: bool = True) -> dict[str, Any]:
    """Score a finished single-label run's GT-class maps; writes ``saliency.csv.gz`` and ``saliency.json``."""
    from bench.run.replay import RunReplay

    replay = RunReplay.open(run_dir, device=device, data_root=data_root)
    run = RunDir(run_dir)
    class_ids = list(replay.valset.class_ids)
    rows: list[dict[str, Any]] = []
    failed = {r["image_id"]: r["error"] for _, r in replay.records.iterrows() if r["status"] != "ok"}
    ok_ids = replay.run_image_ids()
    for item in tqdm(replay.iter_maps(ok_ids), total=len(ok_ids), desc=f"saliency scores of {run.path.name}", unit="img", disable=not progress):
        base = {"image_id": item.gt.image_id, "class_id": class_ids[item.gt.label]}
        if item.error:
            rows.append({**base, "status": "failed", "reason": item.error})
            continue
        gt_map = np.asarray(item.maps[-1:], dtype=np.float64)  # the GT class's map, original pixels
        if not np.isfinite(gt_map).all():
            rows.append({**base, "status": "failed", "reason": "map is not finite (NaN or inf values)"})
            continue
        region = gt_region(item.gt, (item.height, item.width))[None]
        rows.append({**base, "status": "scored", "reason": "", **pair_scores(gt_map, region, None, SALIENCY_POINTING["tolerance"], SALIENCY_POINTING["top_k"], device)[0]})
    by_id = {im.image_id: im for im in replay.valset.images}
    for image_id, error in failed.items():  # images the run itself could not decode
        rows.append({"image_id": image_id, "class_id": class_ids[by_id[image_id].label], "status": "failed", "reason": error})
    rows.sort(key=lambda r: r["image_id"])
    frame = pd.DataFrame(rows, columns=list(EXTRA_COLUMNS)).fillna("")
    path = run.path / "saliency.csv.gz"
    atomic_write_bytes(path, gzip.compress(frame.to_csv(index=False, lineterminator="\n").encode(), mtime=0))
    frame = read_pointing_records(path)
    scored = frame[frame["status"] == "scored"]
    game = PointingGame(tolerance=SALIENCY_POINTING["tolerance"], classes=class_ids)
    game.accumulate(torch.tensor(scored["hit"].astype(int).to_numpy()), list(scored["class_id"]))
    summary: dict[str, Any] = {"images_scored": len(scored), "images_failed": int((frame["status"] == "failed").sum()), **game.compute()}
    for metric in SCORE_METRICS:
        m = metric(k=SALIENCY_POINTING["top_k"]) if metric.key == "top_k_intersection" else metric()
        m.accumulate(torch.tensor(scored[metric.key].to_numpy()))
        summary.update(m.compute())
    summary["maps_from"] = replay.source
    atomic_write_json(run.path / "saliency.json", summary)
    return summary
