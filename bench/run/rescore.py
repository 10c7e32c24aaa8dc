"""`bench rescore`: re-apply a protocol's box rule / thresholds / heuristic to a run's cached CAMs.

The network is not run again: the top-5 classes and scores come from the source run's records and
the maps from its CAM cache (``bench run --save-cams``, see :mod:`bench.run.cam_cache`). Records are made
by the same function as in a fresh run (:func:`bench.core.scoring.image_record`), so rescoring a cache with
protocol P gives exactly the records of a fresh ``--save-cams`` run with P.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from bench.run.cam_cache import read_cam_shard
from bench.core.scoring import failed_record, image_record
from bench.run.manifest import now_utc
from bench.run.rundata import RunDataError, run_dataset
from bench.core.protocol import Protocol, protocol_from_dict
from bench.run.results import RunDir
from bench.run.writer import RunWriter
from bench.data.dataset import Dataset
from bench.core.records import parse_floats, parse_ints

__all__ = ["rescore_run", "RescoreError"]


class RescoreError(ValueError):
    """The source run cannot be rescored as asked (no cache, too few cached classes, data changed)."""


def rescore_run(
    source: RunDir, protocol: Protocol, target: RunDir, *, progress: bool = True, data_root: Path | str | None = None
) -> dict[str, Any]:
    """Rescore ``source``'s cached CAMs with ``protocol`` into ``target``; returns the new summary.

    ``data_root``: the data root if it moved since the run (its GT fingerprint must match).
    ``target`` is written by :class:`bench.run.writer.RunWriter` (its lock held throughout, a
    concurrent writer refused; an interrupted rescore resumes; a finished one is left as it is).
    """
    protocol.require_resize_pipeline("bench rescore")  # cached CAMs are one-view CAMs
    manifest = source.read_manifest()
    if not manifest["settings"].get("save_cams"):
        raise RescoreError(f"{source.path} has no CAM cache; rerun it with `bench run ... --save-cams`")
    if manifest["model"]["head"] not in ("gap", "gmp"):
        raise RescoreError(f"{source.path}: model {manifest['model']['name']} does not localize with CAMs")
    source_protocol = protocol_from_dict(manifest["protocol"], f"{source.manifest_path} (protocol)")
    cached_ranks = source_protocol.ranks_needed
    if (source_protocol.pipeline == "crop") != (protocol.pipeline == "crop"):
        raise RescoreError(
            f"{source.path} cached maps of {'the centre crop' if source_protocol.pipeline == 'crop' else 'the whole image'}; "
            f"{protocol.name} needs maps of {'the centre crop' if protocol.pipeline == 'crop' else 'the whole image'}: rerun `bench run --suite {protocol.name}`"
        )
    if protocol.ranks_needed > cached_ranks:
        raise RescoreError(
            f"{protocol.name} needs the CAMs of the top-{protocol.ranks_needed} classes but {source.path} cached "
            f"only the top-{cached_ranks}; rerun with a suite that needs at least as many classes"
        )
    try:
        valset = run_dataset(manifest, data_root=data_root, blacklist=protocol.blacklist or None, where=str(source.path))
    except RunDataError as exc:
        raise RescoreError(str(exc)) from None
    records = source.read_records()
    identity = dict(manifest["identity"], protocol_hash=protocol.hash)

    def make_manifest() -> dict[str, Any]:
        made = dict(manifest)
        made.update(
            identity=identity,
            protocol_hash=protocol.hash,
            protocol=protocol.resolved(),
            protocol_file=protocol.source,
            rescored_from=str(source.path),
            started=now_utc(),
        )
        made.pop("finished", None)
        return made

    with RunWriter.open(target, identity, make_manifest, n_images=len(records), shard_size=manifest["settings"]["shard_size"]) as writer:
        if writer.complete:
            return writer.summary  # type: ignore[return-value]  # one process: always a summary
        desc = f"rescore {manifest['model']['name']} with {protocol.name}"
        with tqdm(total=len(writer.indices()), desc=desc, unit="img", disable=not progress) as bar:
            for shard in writer.todo:
                out = _rescore_shard(source, protocol, valset, records, writer.shard_range(shard), shard, cached_ranks)
                writer.write_shard(shard, out)
                bar.update(len(out))
        return writer.finish()  # type: ignore[return-value]


def _rescore_shard(source: RunDir, protocol: Protocol, valset: Dataset, records: pd.DataFrame, rows: range, shard: int,
                   cached_ranks: int) -> list[dict[str, Any]]:  # fmt: skip
    """The records of one shard (images ``rows``) from the source's records and cached CAMs."""
    cache = read_cam_shard(source, shard)
    position = {int(i): row for row, i in enumerate(cache["index"])}
    out: list[dict[str, Any]] = []
    for index, row in zip(rows, records.iloc[rows.start : rows.stop].itertuples(index=False)):
        gt = valset.get(row.image_id)
        blacklisted = gt.image_id in valset.blacklisted
        if row.status != "ok":
            out.append(failed_record(gt, blacklisted, row.error))
            continue
        cached_classes = cache["classes"][position[index]]
        top5 = parse_ints(row.top5_classes)
        if list(cached_classes[:cached_ranks]) != list(top5[:cached_ranks]) or cached_classes[-1] != gt.label:
            raise RescoreError(f"{source.path}: cached CAMs of {gt.image_id} do not match its record; the cache is stale or corrupt")
        maps = torch.from_numpy(cache["cams"][position[index]].astype(np.float32))
        size = (int(row.height), int(row.width))
        out.append(image_record(protocol, gt, blacklisted, size, top5, parse_floats(row.top5_scores), maps, cached_classes))
    return out
