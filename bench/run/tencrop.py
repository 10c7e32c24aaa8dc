"""``bench tencrop``: a suite with ``input.pipeline = "tencrop_release"`` run over a data set.

The one-view engine (:mod:`bench.run.engine`) resizes each image once and batches images; the
release's pipeline needs each decoded image whole (ten crops of a 256 x 256 resize, maps merged
back at the original size), so it runs here, image by image (ten crops = one batch), and writes a
run folder of the same layout (``manifest.json``, ``records/`` shards, ``records.csv.gz``,
``summary.json``; :mod:`bench.run.results`) that ``bench table`` / ``bench compare`` read like any
run. Records come from the engine's own per-image path (:func:`bench.core.scoring.image_record`,
:class:`bench.run.writer.RunWriter`) applied to maps that are already at the original size. Resumable by shard; a run folder holding
a different run is refused; a finished one is reported as it is (nothing written). ``bench show`` / ``bench report`` cannot replay these runs (their
galleries redraw one-view CAMs) and say so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bench.core.protocol import Protocol
from bench.core.scoring import failed_record, image_record
from bench.data.dataset import Dataset
from bench.data.dataset import GTImage
from bench.data.transforms import MAX_PIXELS, decode_rgb, failure_reason
from bench.models.caffe.model import CaffeCamNet
from bench.models.caffe.tencrop import TenCropResult, load_mean_image, register_jpeg_rule, tencrop_maps
from bench.models.registry import BenchModel
from bench.models.sources import WeightsInfo, sha256_file
from bench.run.manifest import data_section, model_section, new_manifest
from bench.run.results import RunDir
from bench.run.writer import RunWriter
from bench.runtime import RunError

__all__ = ["run_tencrop_suite", "run_tencrop_named", "tencrop_record", "score_tencrop"]


def score_tencrop(protocol: Protocol, gt: GTImage, blacklisted: bool, size: tuple[int, int], res: TenCropResult) -> dict[str, Any]:
    """The ``ok`` record of one image from its ten-crop maps: :func:`bench.core.scoring.image_record`
    (the engine's own per-image path) on maps that are already at the original size.

    With ``boxes.jpeg_roundtrip`` the boxes come from :data:`~bench.models.caffe.tencrop.JPEG_RULE`
    (``cam_release`` after the JPEG round trip). CPU only; safe to run in a thread.
    """
    scoring = replace(protocol, box_rule=register_jpeg_rule()) if protocol.jpeg_roundtrip else protocol
    return image_record(scoring, gt, blacklisted, size, res.top_classes, res.top_scores, res.maps, res.map_classes)


def tencrop_record(
    protocol: Protocol, model: BenchModel, gt: GTImage, blacklisted: bool, mean_image: np.ndarray | None, device: str,
    pool: ThreadPoolExecutor | None = None,
) -> dict[str, Any] | Future:
    """The per-image record (columns of :data:`bench.run.results.RECORD_COLUMNS`) of one image.

    The network part runs here; the boxes and scoring (:func:`score_tencrop`) run in ``pool``
    when given (then a ``Future`` of the record is returned). A decoding failure gives
    ``status = "failed"`` with the reason; nothing else is caught.
    """
    try:
        rgb = decode_rgb(gt.path)
    except (ValueError, OSError) as exc:
        return failed_record(gt, blacklisted, failure_reason(exc, gt.path))
    ranks = protocol.ranks_needed
    res = tencrop_maps(model, rgb, mean_image=mean_image, top_k=5, map_ranks=ranks, extra_classes=(gt.label,), device=device)
    size = (int(rgb.shape[0]), int(rgb.shape[1]))
    if pool is None:
        return score_tencrop(protocol, gt, blacklisted, size, res)
    return pool.submit(score_tencrop, protocol, gt, blacklisted, size, res)


def _mean_image(protocol: Protocol, valset: Dataset) -> tuple[np.ndarray | None, str | None]:
    if not protocol.mean_image:
        return None, None
    path = valset.root / protocol.mean_image
    if not path.is_file():
        raise RunError(
            f"{protocol.name}: input.mean_image = '{protocol.mean_image}' is not in the data root ({path}); put the "
            "release's ilsvrc_2012_mean.mat there (CAM repository), or use a suite with mean_image = \"\" "
            "(per-channel mean)"
        )
    return load_mean_image(path), sha256_file(path)


def run_tencrop_suite(
    protocol: Protocol,
    valset: Dataset,
    model: BenchModel,
    weights: WeightsInfo,
    run: RunDir,
    *,
    device: str = "cpu",
    limit: int | None = None,
    shard_size: int = 1000,
    box_workers: int = 2,
    progress: bool = True,
    command: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``model`` (a Caffe model with a GAP head) through the ten-crop pipeline into ``run``.

    Returns the summary (``summary.json``). Shards already written by the same run are kept.
    ``box_workers`` threads extract boxes and score images while the next image goes through the
    network (0: inline); records are identical either way.

    Raises:
        RunError: the protocol is not a ten-crop one, the model has too few classes or no CAM
            head, or the mean image is missing.
        RunConflict: ``run`` holds a different run, or another process writes there.
    """
    if protocol.pipeline != "tencrop_release":
        raise RunError(f"{protocol.name}: input.pipeline is '{protocol.pipeline}'; `bench tencrop` runs 'tencrop_release' suites")
    if model.spec.head != "gap" or not isinstance(model.net, CaffeCamNet):
        raise RunError(f"{model.spec.name}: the ten-crop pipeline needs a Caffe model with a GAP head (caffe:NET.pt or DEPLOY.prototxt)")
    top_label = max((g.label for g in valset.images), default=-1)
    if top_label >= model.num_classes or model.num_classes < 5:
        raise RunError(f"{model.spec.name} predicts {model.num_classes} classes; the data has labels up to {top_label} (and top-5 needs 5)")
    mean_image, mean_sha = _mean_image(protocol, valset)
    n_images = len(valset.images) if limit is None else min(limit, len(valset.images))
    identity = {
        "protocol_hash": protocol.hash,
        "model": model.spec.name,
        "weights_sha256": weights.sha256,
        "data_fingerprint": valset.fingerprint(),
        "images": n_images,
        "shard_size": shard_size,
        "pipeline": protocol.pipeline,
        "mean_image_sha256": mean_sha,
    }

    def make_manifest() -> dict[str, Any]:
        return new_manifest(
            identity=identity,
            protocol=protocol,
            model=model_section(model, weights),
            data=data_section(valset, n_images),
            settings={
                "pipeline": protocol.pipeline, "device": device, "limit": limit, "shard_size": shard_size,
                "mean_image": protocol.mean_image or None, "mean_image_sha256": mean_sha,
                "jpeg_roundtrip": protocol.jpeg_roundtrip, "max_pixels": MAX_PIXELS,
                "torch_threads": torch.get_num_threads(), "save_cams": False, "seed": None,
            },  # fmt: skip
            command=command,
        )

    with RunWriter.open(run, identity, make_manifest, n_images=n_images, shard_size=shard_size) as writer:
        if writer.complete:
            return writer.summary  # type: ignore[return-value]  # rank 0: always a summary
        model.eval()
        pool = ThreadPoolExecutor(max_workers=box_workers) if box_workers > 0 else None
        try:
            with tqdm(total=len(writer.indices()), desc=f"{model.spec.name} on {protocol.name}", unit="img",
                      disable=not progress) as bar:  # fmt: skip
                for k in writer.todo:
                    pending: deque[dict[str, Any] | Future] = deque()
                    records: list[dict[str, Any]] = []

                    def drain(keep: int) -> None:
                        while len(pending) > keep:
                            item = pending.popleft()
                            records.append(item.result() if isinstance(item, Future) else item)
                            bar.update(1)

                    for i in writer.shard_range(k):
                        gt = valset.images[i]
                        blacklisted = gt.image_id in valset.blacklisted
                        pending.append(tencrop_record(protocol, model, gt, blacklisted, mean_image, device, pool))
                        drain(keep=2 * box_workers)  # bounded: full-size maps wait in memory
                    drain(keep=0)
                    writer.write_shard(k, records)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return writer.finish()  # type: ignore[return-value]


def run_tencrop_named(
    suite: str,
    model_name: str,
    weights: Path | None,
    data: Path | None,
    out: Path,
    *,
    gt_layout: str = "auto",
    images: Path | None = None,
    device: str = "cpu",
    limit: int | None = None,
    shard_size: int = 1000,
    box_workers: int = 2,
    progress: bool = True,
) -> list[RunDir]:
    """``bench tencrop``: the suite and its companions, each into ``OUT/<suite>/<model>``; prints the summaries."""
    import json

    from bench.core.protocol import load_protocol
    from bench.data.open import open_dataset
    from bench.models import build_model
    from bench.run.suite import resolve_data

    protocol = load_protocol(suite)
    protocols = [protocol, *(load_protocol(c) for c in protocol.companions)]
    root = resolve_data(protocol, data)
    model, info = build_model(model_name, weights)
    runs = []
    for p in protocols:
        blacklist = (root / p.blacklist) if p.blacklist else None
        valset = open_dataset(root, layout=gt_layout, images=images, blacklist=blacklist)
        run = RunDir(out / p.name / model.spec.name)
        summary = run_tencrop_suite(
            p, valset, model, info, run, device=device, limit=limit, shard_size=shard_size, box_workers=box_workers,
            progress=progress,
        )  # fmt: skip
        print(f"{model.spec.name} on {p.name}: results in {run.path}")
        print(json.dumps(summary, indent=2))
        runs.append(run)
    return runs
