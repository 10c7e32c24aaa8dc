"""The crop protocol's threshold curve (``bench run --suite *_loc_crop --select-on SPLIT``).

A crop run made with its map cache (``--save-cams``) is rescored at every box threshold of
:data:`DEFAULT_TAUS` with the crop rules (:mod:`bench.core.crop`): each image's GT-class map is
normalised and resized once, then thresholded, boxed and scored per tau; the accuracies are averaged
per class, then over classes, by the same functions as a run's summary
(:func:`bench.core.metrics.breakdowns` -> :func:`bench.core.crop.class_averaged`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from bench.core.crop import box_at, class_averaged, crop_iou, crop_map, to_crop
from bench.core.metrics import breakdowns
from bench.core.protocol import Protocol
from bench.core.scoring import iou_passes, is_hit
from bench.run.cam_cache import read_cam_shard
from bench.run.results import RunDir, records_to_arrays
from bench.run.rundata import run_dataset

__all__ = ["DEFAULT_TAUS", "crop_threshold_curve"]

#: Box thresholds tried: 0.05, 0.10, ..., 0.95 (tau = 0 makes every pixel foreground).
DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


def crop_threshold_curve(run: RunDir, protocol: Protocol, taus: Sequence[float] = DEFAULT_TAUS, progress: bool = True) -> pd.DataFrame:
    """Class-averaged Top-1 / Top-5 / GT-known Loc accuracy (percent) of ``run``'s cached GT-class maps at
    each tau; columns ``tau``, ``top1_loc_acc``, ``top5_loc_acc``, ``gt_known_loc_acc``."""
    manifest = run.read_manifest()
    if not manifest["settings"].get("save_cams"):
        raise ValueError(f"{run.path} has no map cache; the threshold curve needs one (run with --save-cams)")
    valset = run_dataset(manifest, blacklist=protocol.blacklist or None, where=str(run.path))
    by_id = {g.image_id: g for g in valset.images}
    records = run.read_records()
    arrays = records_to_arrays(records)
    shard_size = manifest["settings"]["shard_size"]
    n = len(records)
    ious = np.zeros((len(taus), n))
    empty = np.zeros((len(taus), n), dtype=bool)
    bar = tqdm(total=n, desc=f"threshold curve of {run.path.name}", unit="img", disable=not progress)
    for shard in range((n + shard_size - 1) // shard_size):
        cache = read_cam_shard(run, shard)
        position = {int(i): row for row, i in enumerate(cache["index"])}
        for index in range(shard * shard_size, min((shard + 1) * shard_size, n)):
            bar.update(1)
            row = records.iloc[index]
            if row["status"] != "ok":
                continue
            gt = by_id[row["image_id"]]
            classes = [int(c) for c in cache["classes"][position[index]]]
            norm = crop_map(cache["cams"][position[index]][classes.index(gt.label)], protocol.crop_size)
            size = (int(row["height"]), int(row["width"]))
            crop_gt = to_crop(boxes=gt.boxes, image_size=size, resize=protocol.crop_resize, crop=protocol.crop_size).boxes
            for t, tau in enumerate(taus):
                box, empty[t, index] = box_at(norm, tau, protocol.crop_size)
                ious[t, index] = crop_iou(box, crop_gt).max()
    bar.close()
    rows = []
    for t, tau in enumerate(taus):
        hit = iou_passes(ious[t], protocol.iou_threshold, protocol.strict_iou)
        guess_hits = is_hit(arrays["guess_classes"], arrays["labels"][:, None], ious[t][:, None], protocol.iou_threshold, protocol.strict_iou)
        at_tau = dict(arrays, guess_hits=guess_hits, gtk_iou=ious[t], gtk_hit=hit, degenerate=empty[t])
        averaged = class_averaged(breakdowns(at_tau, manifest["data"].get("class_ids"))["by_class"])
        rows.append({"tau": float(tau), **{k: averaged[k] for k in ("top1_loc_acc", "top5_loc_acc", "gt_known_loc_acc")}})
    return pd.DataFrame(rows)
