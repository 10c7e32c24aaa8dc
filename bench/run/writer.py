"""The one run writer: lock, manifest, shard plan, resume, atomic shard writes, merge, summary.

Every producer of run folders (`bench run` :mod:`bench.run.engine`, `bench score`
:mod:`bench.run.score`, `bench rescore` :mod:`bench.run.rescore`, `bench tencrop`
:mod:`bench.run.tencrop`) computes per-image records and hands them to a :class:`RunWriter`; the
writer owns everything about the folder (layout: :mod:`bench.run.results`)::

    with RunWriter.open(run, identity, make_manifest, n_images=N, shard_size=S) as writer:
        if writer.complete:                  # the same run finished before: nothing is written
            return writer.summary
        for shard in writer.todo:            # this rank's unfinished shards, in order
            writer.write_shard(shard, records_of(writer.images(shard)))
        return writer.finish()               # merge, manifest "finished", summary.json

Rules (docs/protocol.md, "Run folders"):

* **Lock**: rank 0 holds ``<run>/.lock`` for the whole ``with`` block (:meth:`RunDir.lock`); a second
  writer is refused with :class:`~bench.run.manifest.RunConflict` naming the holder.
* **Manifest**: a folder holding a run with another ``identity`` is refused, naming the keys that
  differ (:func:`~bench.run.manifest.resume_or_start`); otherwise the existing manifest is kept
  (resume) or ``make_manifest()`` is written (rank 0).
* **Shards**: shard ``k`` holds images ``[k*S, min((k+1)*S, N))`` in data-set order; under
  ``torchrun`` rank ``r`` computes the shards ``k % world == r``. A shard's side files (a CAM cache,
  the map digests of a score run) are written before its records, each atomically, so a shard whose
  records exist is finished and is skipped on resume.
* **Already complete**: when the manifest says ``finished`` and ``records.csv.gz`` / ``summary.json``
  and every shard exist, the run is complete: nothing is recomputed and **nothing is written** (the
  manifest's ``finished`` time and every result file keep their bytes and modification times).
* **Finish**: rank 0 merges the shards into ``records.csv.gz``, sets ``finished`` and writes the
  summary, which :func:`summarize_records` derives from the merged records alone (records first,
  summary derived), so a resumed run's files equal an uninterrupted run's byte for byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd

from bench.core.crop import class_averaged
from bench.core.protocol import protocol_from_dict
from bench.core.scoring import localizes
from bench.metrics.localization import LocalizationError
from bench.run.manifest import RunConflict, now_utc, resume_or_start
from bench.run.results import RunDir, RunLocked, atomic_write_bytes
from bench.runtime import dist_env

__all__ = ["RunWriter", "summarize_records", "summarize_run", "shard_count"]


#: The keys of the summary's breakdowns (:func:`bench.core.metrics.breakdowns`), after the metrics and the note.
_BREAKDOWNS = ("by_size", "by_class")


def shard_count(n_images: int, shard_size: int) -> int:
    """Number of shards of ``shard_size`` images that hold ``n_images`` (the last may be short)."""
    return (n_images + shard_size - 1) // shard_size


#: What the summary says for top-k metrics of a run scored from GT-class maps only.
GT_ONLY = "n/a (GT-class maps only)"
_TOPK_KEYS = ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err")


def mark_gt_class_maps_only(summary: dict[str, Any], why: str) -> dict[str, Any]:
    """Top-k keys None, ``gt_class_maps_only: true`` and a note saying ``why`` (tables show GT_ONLY)."""
    summary.update({k: None for k in _TOPK_KEYS})
    summary.update(gt_class_maps_only=True, note=f"{GT_ONLY}: {why}")
    return summary


def summarize_records(manifest: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """``summary.json`` of a run from its manifest and its merged per-image records.

    The one place a run's summary is computed: the run's identity (suite, model, protocol hash, data
    fingerprint), then the metric object :class:`bench.metrics.LocalizationError` fed the records
    (:func:`bench.core.metrics.summarize`, then the per-size / per-class breakdowns). Models whose
    head does not localize with the protocol's map method get a note (before the breakdowns) and no
    localization metrics; crop suites add the papers' class-averaged accuracies (``crop``); runs of
    GT-class maps only (``settings.gt_class_maps_only``) get their top-k keys None and a note.
    """
    localized = localizes(manifest["model"]["head"], manifest["protocol"]["cam"]["method"])
    summary: dict[str, Any] = {
        "suite": manifest["protocol"]["protocol"]["name"],
        "model": manifest["model"]["name"],
        "protocol_hash": manifest["protocol_hash"],
        "data_fingerprint": manifest["data"]["fingerprint"],
    }
    # One process's merged records: no sync across processes (rank 0 alone summarizes).
    metric = LocalizationError(protocol_from_dict(manifest["protocol"], "the run manifest (protocol)"),
                               class_ids=manifest["data"].get("class_ids"), localized=localized,
                               keep_records=False, sync_on_compute=False)  # fmt: skip
    metric.update_records(frame)
    metrics = metric.compute()
    summary.update((k, v) for k, v in metrics.items() if k not in _BREAKDOWNS)
    if not localized:
        summary["note"] = "fully connected head: CAM does not apply; localization needs gradient-based maps (--method gradcam|gradcampp|backprop)"
    summary.update((k, metrics[k]) for k in _BREAKDOWNS)
    if manifest["protocol"]["input"].get("pipeline") == "crop":  # the papers' per-class averaged accuracies
        summary["crop"] = {**class_averaged(summary["by_class"]), "box_threshold": manifest["protocol"]["guesses"]["threshold"]}
    if manifest.get("settings", {}).get("gt_class_maps_only"):  # the centre baseline, library methods on wsol suites
        why = ("the centre baseline classifies nothing" if manifest["model"]["head"] == "center"
               else "this suite needs only the GT class's map, the only one computed for a library method")  # fmt: skip
        mark_gt_class_maps_only(summary, why)
    return summary


def summarize_run(run: RunDir) -> dict[str, Any]:
    """Recompute and write ``summary.json`` from the run's merged records (:func:`summarize_records`)."""
    summary = summarize_records(run.read_manifest(), run.read_records())
    run.write_summary(summary)
    return summary


class RunWriter:
    """One run folder being written by one producer (module docstring). Make it with :meth:`open`."""

    def __init__(
        self,
        run: RunDir,
        manifest: dict[str, Any],
        n_images: int,
        shard_size: int,
        *,
        rank: int = 0,
        world: int = 1,
        barrier: Callable[[], None] | None = None,
    ):
        self.run = run
        self.manifest = manifest
        self.n_images = n_images
        self.shard_size = shard_size
        self.rank = rank
        self.world = world
        self._barrier = barrier
        self.n_shards = shard_count(n_images, shard_size)
        done = run.done_shards()
        self.complete = self._is_complete(done)
        #: this rank's shards still to compute, in order (empty when complete)
        self.todo: list[int] = [] if self.complete else [k for k in range(self.n_shards) if k % world == rank and k not in done]

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        run: RunDir,
        identity: dict[str, Any],
        make_manifest: Callable[[], dict[str, Any]],
        *,
        n_images: int,
        shard_size: int,
        distributed: bool = False,
        barrier: Callable[[], None] | None = None,
    ) -> Iterator[RunWriter]:
        """Lock ``run`` (rank 0), check or write its manifest, plan the shards.

        ``distributed``: read the rank and world size from ``torchrun``'s environment
        (:func:`bench.runtime.dist_env`); ``barrier`` then synchronises the ranks after the manifest
        is written and before rank 0 merges.

        Raises:
            RunConflict: another live process writes to ``run``, or it holds a different run.
        """
        rank, world = (dist_env()[:2]) if distributed else (0, 1)
        try:
            with run.lock(enabled=rank == 0):
                manifest = resume_or_start(run, identity, make_manifest, write=rank == 0)
                if world > 1 and barrier is not None:
                    barrier()
                yield cls(run, manifest, n_images, shard_size, rank=rank, world=world, barrier=barrier)
        except RunLocked as exc:
            raise RunConflict(str(exc)) from None

    def _is_complete(self, done: set[int]) -> bool:
        return (
            "finished" in self.manifest
            and self.run.is_complete()
            and all(k in done for k in range(self.n_shards))
        )

    # ---- the plan
    def shard_range(self, shard: int) -> range:
        """Image indices (data-set order) of ``shard``."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n_images))

    def indices(self) -> list[int]:
        """Image indices of this rank's unfinished shards, in order."""
        return [i for k in self.todo for i in self.shard_range(k)]

    @property
    def summary(self) -> dict[str, Any] | None:
        """The finished run's summary (rank 0; None on other ranks)."""
        return self.run.read_summary() if self.rank == 0 else None

    # ---- writing
    def write_shard(self, shard: int, records: list[dict[str, Any]], side_files: Mapping[str, bytes] | None = None,
                    write_side: Callable[[], None] | None = None) -> None:  # fmt: skip
        """Write one finished shard: its side files first (``side_files``: name in the shard folder ->
        bytes; ``write_side``: a writer of its own, e.g. the CAM cache), then its records, each
        atomically. The records' presence marks the shard finished."""
        if len(records) != len(self.shard_range(shard)):  # pragma: no cover - a producer bug
            raise RuntimeError(f"internal error: shard {shard} got {len(records)} records for {len(self.shard_range(shard))} images")
        for name, data in (side_files or {}).items():
            atomic_write_bytes(self.run.shard_dir / name, data)
        if write_side is not None:
            write_side()
        self.run.write_shard(shard, records)

    def finish(
        self,
        *,
        manifest_update: Callable[[dict[str, Any]], None] | None = None,
        summary_update: Callable[[dict[str, Any], pd.DataFrame], None] | None = None,
    ) -> dict[str, Any] | None:
        """Merge the shards, set the manifest's ``finished`` time, write the summary; returns it (rank 0).

        Other ranks wait at the barrier and return None. ``manifest_update(manifest)`` adds what the
        producer knows only now (e.g. a score run's map fingerprint); ``summary_update(summary,
        records)`` adds producer-specific keys before the summary is written once.
        """
        if self.world > 1 and self._barrier is not None:
            self._barrier()
        if self.rank != 0:
            return None
        frame = self.run.merge_shards(self.n_shards)
        if manifest_update is not None:
            manifest_update(self.manifest)
        self.manifest["finished"] = now_utc()
        self.run.write_manifest(self.manifest)
        summary = summarize_records(self.manifest, frame)
        if summary_update is not None:
            summary_update(summary, frame)
        self.run.write_summary(summary)
        return summary
