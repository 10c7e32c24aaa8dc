"""Score maps held in memory through the metric objects, without a run folder (``bench.score_maps``
with items and no ``out``).

The items and their meaning are `bench score`'s (:mod:`bench.run.score`): ``(image_id, classes,
maps[, scores])``, ``classes`` None with a 2-D GT-class map, else ``classes`` (k,) (indices or class
ids) in rank order with ``maps`` (k, h, w). Every image of the data is accounted for as in a score
run: an image without an item, or whose map or image header cannot be used, is a ``failed`` record
saying why; items naming no image are counted (``unmatched_maps``). The records go through
:class:`bench.metrics.LocalizationError` (the same :func:`bench.core.scoring.image_record`), the
wsol_* suites' sweep through :class:`bench.metrics.MaxBoxAccV2` / :class:`bench.metrics.PxAP`
(wsolevaluation's rules at the suite's step), so the numbers are those of the run folder `bench
score` would write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bench.core import wsol
from bench.core.protocol import Protocol
from bench.core.scoring import failed_record
from bench.data.dataset import Dataset, image_header_size
from bench.metrics import LocalizationError, MaxBoxAccV2, MetricInputError, PxAP
from bench.run.saved_maps import ScoreError, check_map_array, gt_map_index, ranked_maps
from bench.run.score import MAX_NAMED
from bench.run.writer import GT_ONLY, mark_gt_class_maps_only
from bench.run.wsol_suite import ON_TEST

__all__ = ["InMemoryScore", "score_items"]



@dataclass(frozen=True)
class InMemoryScore:
    """What a score run folder would hold, as read back: ``summary`` (summary.json), ``records``
    (records.csv.gz), ``sweep`` (sweep.json of a wsol_* suite, else None)."""

    summary: dict[str, Any]
    records: pd.DataFrame
    sweep: dict[str, Any] | None


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _unpack(item: Sequence[Any]) -> tuple[str, Any, Any, Any]:
    if len(item) not in (3, 4):
        raise ScoreError(f"each item must be (image_id, classes, maps[, scores]), got {len(item)} fields")
    return str(item[0]), item[1], item[2], item[3] if len(item) == 4 else None


def score_items(
    items: Iterable[Sequence[Any]], valset: Dataset, protocol: Protocol, *, name: str = "maps", progress: bool = False
) -> InMemoryScore:
    """Score in-memory items on ``valset`` with ``protocol`` (module docstring).

    Raises:
        ScoreError: an item is malformed, an image has two items, or GT-class and ranked items are mixed.
    """
    loc = LocalizationError(protocol, class_ids=valset.class_ids)
    boxacc = MaxBoxAccV2(step=protocol.wsol_step, rules="wsol") if protocol.wsol_evaluation else None
    pxap = PxAP(step=protocol.wsol_step) if protocol.wsol_evaluation and valset.has_masks else None
    index = {g.image_id: i for i, g in enumerate(valset.images)}
    seen: set[str] = set()
    unmatched: list[str] = []
    kinds: set[str] = set()
    for item in tqdm(items, desc=f"score in memory on {protocol.name}", unit="map", disable=not progress):
        image_id, classes, maps, scores = _unpack(item)
        if image_id not in index:
            unmatched.append(image_id)
            continue
        if image_id in seen:
            raise ScoreError(f"image {image_id} has two items; give one (image_id, classes, maps[, scores]) per image")
        seen.add(image_id)
        kinds.add("npy" if classes is None else "npz")
        if len(kinds) > 1:
            raise ScoreError("the items mix GT-class maps (classes None) and ranked maps; one run scores one kind")
        i = index[image_id]
        gt = valset.images[i]
        blacklisted = image_id in valset.blacklisted
        size = image_header_size(gt.path)
        if size is None:
            loc.update_records([failed_record(gt, blacklisted, "image: cannot read the image header")], indices=[i])
            continue
        try:
            if classes is None:
                gt_map = check_map_array(_numpy(maps), "the map", 2)
                loc.update(gt_map[None], [gt.label], [gt.boxes], [size], image_ids=[image_id], blacklisted=[blacklisted], indices=[i])
            else:
                k, stack, s = ranked_maps(_numpy(classes), _numpy(maps), None if scores is None else _numpy(scores), valset.class_ids)
                gt_map = stack[gt_map_index(k, gt.label, valset.class_ids)]
                loc.update(stack[None], [gt.label], [gt.boxes], [size], classes=k[None], scores=None if s is None else s[None],
                           image_ids=[image_id], blacklisted=[blacklisted], indices=[i])  # fmt: skip
        except (ValueError, MetricInputError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            loc.update_records([failed_record(gt, blacklisted, f"map of item {image_id}: {reason}")], indices=[i])
            continue
        if boxacc is not None:
            boxacc.update([gt_map], [gt.boxes], [size])
        if pxap is not None and gt.masks:
            masks = [wsol.read_mask_image(p) for p in gt.masks]
            pxap.update([gt_map], [masks], [None if gt.ignore is None else wsol.read_mask_image(gt.ignore)])
    for i, gt in enumerate(valset.images):
        if gt.image_id not in seen:
            loc.update_records([failed_record(gt, gt.image_id in valset.blacklisted, "no item for this image")], indices=[i])

    summary: dict[str, Any] = {"suite": protocol.name, "model": name, "protocol_hash": protocol.hash, "data_fingerprint": valset.fingerprint()}
    summary.update(loc.compute())
    if kinds == {"npy"}:  # as a score run of .npy maps: top-k undefined, and the summary says why
        mark_gt_class_maps_only(summary, ".npy maps carry no ranked classes, so top-k classification and localization are not defined")
    summary["unmatched_maps"] = len(unmatched)
    summary["unmatched_examples"] = sorted(unmatched)[:MAX_NAMED]
    sweep = None
    if boxacc is not None:
        sweep = boxacc.compute()
        px = pxap.compute() if pxap is not None else {"pxap": None, "pxap_images": 0}
        sweep.update(pxap=px["pxap"] if px["pxap_images"] else None, pxap_images=px["pxap_images"])
        sweep.update(at="224", step=protocol.wsol_step, rules="wsol", failed_or_uncached=int(summary["images"] - sweep["images"]))
        sweep["threshold_chosen_on"] = ON_TEST
    # as summary.json / sweep.json read back (delta keys as text), so both kinds of Run read alike
    return InMemoryScore(json.loads(json.dumps(summary)), loc.records, None if sweep is None else json.loads(json.dumps(sweep)))
