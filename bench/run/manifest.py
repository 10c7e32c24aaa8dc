"""The run manifest: what a run folder holds, written when the folder is created.

Every producer of run folders (``bench run``, ``bench score``, ``bench tencrop``, ``bench rescore``) builds its manifest
from these sections, so every run describes its model and data the same way and the readers
(:mod:`bench.run.rundata`, :mod:`bench.run.replay`, the reports) need one code path. The format is
in ``docs/protocol.md`` (manifest).

The ``identity`` part must match for a run folder to be resumed: :func:`resume_or_start` refuses a
folder that holds a different run.
"""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.core.protocol import Protocol
from bench.data.dataset import Dataset
from bench.models import BenchModel, WeightsInfo
from bench.run.results import RunDir
from bench.runtime import RunError, host_facts, library_versions

__all__ = ["RunConflict", "model_section", "data_section", "new_manifest", "resume_or_start", "now_utc"]


class RunConflict(RunError):
    """The output folder holds a different run (other protocol, model, weights, data or size)."""


def now_utc() -> str:
    """The current time, ISO 8601 in UTC to the second (manifest ``started`` / ``finished``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def model_section(model: BenchModel, weights: WeightsInfo) -> dict[str, Any]:
    """The manifest's ``model``: spec fields, where the weights came from and their SHA-256; user
    models add their reference, preprocessing, layer, classifier and reshape (``manifest_info``)."""
    spec = model.spec
    return {
        "name": spec.name,
        "paper_name": spec.paper_name,
        "family": spec.family,
        "head": spec.head,
        "input_size": spec.input_size,
        "grid": spec.grid,
        "weights_source": weights.source,
        "weights_path": weights.path,
        "weights_sha256": weights.sha256,
        **model.manifest_info(),
    }


def data_section(dataset: Dataset, n_images: int) -> dict[str, Any]:
    """The manifest's ``data``: everything :func:`bench.run.rundata.run_dataset` needs to rebuild the
    data set (``describe``), its GT fingerprint, the class ids, and the counts of this run."""
    return {
        "root": str(dataset.root),
        "images_dir": str(dataset.images_dir) if dataset.images_dir is not None else None,
        "class_ids": list(dataset.class_ids),
        "layout": dataset.layout,
        "describe": dataset.describe(),
        "fingerprint": dataset.fingerprint(),
        "images_total": len(dataset.images),
        "images_run": n_images,
        "blacklisted": len(dataset.blacklisted),
        "clipped_boxes": dataset.clipped_boxes,
    }


def new_manifest(
    *,
    identity: dict[str, Any],
    protocol: Protocol,
    model: dict[str, Any],
    data: dict[str, Any],
    settings: dict[str, Any],
    command: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A complete manifest: the sections given, the protocol (resolved and hashed), library versions,
    host, command line and start time. ``extra`` adds sections (e.g. a score run's ``maps``)."""
    return {
        "identity": identity,
        "protocol_hash": protocol.hash,
        "protocol": protocol.resolved(),
        "protocol_file": protocol.source,
        "model": model,
        **extra,
        "data": data,
        "settings": settings,
        "versions": library_versions(),
        "host": host_facts(),
        "command": list(command) or sys.argv,
        "started": now_utc(),
    }


def resume_or_start(run: RunDir, identity: dict[str, Any], make: Callable[[], dict[str, Any]], *, write: bool = True) -> dict[str, Any]:
    """The manifest of ``run``: the existing one when its identity matches (a resume), else a new one
    from ``make()``, written unless ``write`` is False (other ranks of a distributed run).

    Raises:
        RunConflict: the folder holds a run with another identity; the message lists what differs.
    """
    if run.exists():
        previous = run.read_manifest()
        mismatched = [k for k, v in identity.items() if previous.get("identity", {}).get(k) != v]
        if mismatched:
            raise RunConflict(
                f"{run.path} already holds a different run ({', '.join(mismatched)} differ); "
                "choose another --out or delete that folder"
            )
        return previous
    manifest = make()
    if write:
        run.write_manifest(manifest)
    return manifest
