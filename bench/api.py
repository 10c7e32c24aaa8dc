"""The Python API: evaluate a model, score maps, load a run (same code path as the CLI).

``bench.evaluate`` is ``bench run`` (:func:`bench.workflow.run_requested_suite`); ``bench.score_maps``
is ``bench score`` (:func:`bench.run.score.score_folder`) for a folder of map files, and scores
in-memory items through the metric objects (:func:`bench.run.in_memory.score_items`) without
writing anything unless ``out`` is given. Both return a :class:`Run`. For a run folder, ``out=None``
writes to a fresh temporary folder (kept: the returned ``Run.path`` points into it; delete it when
done).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from bench.models.resolve import ModelOptions
from bench.run.engine import RunConfig
from bench.run.results import RunDir
from bench.run.score import score_folder, write_maps
from bench.workflow import run_requested_suite
from bench.run.suite import SuiteRequest
from bench.runtime import BenchError, resolve_device

__all__ = ["Run", "BenchError", "evaluate", "score_maps", "load_run"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Run:
    """A finished run: a run folder, or maps scored in memory (``path`` None).

    Attributes:
        path: the run folder (``OUT/<suite>/<model>``), or None for maps scored in memory.
        summary: ``summary.json`` as a dict (the metrics of the README's protocol section).
        records: one row per image (``records.csv.gz``; columns in :mod:`bench.run.results`).
        manifest: ``manifest.json`` as a dict (what was run); for maps scored in memory, the suite's
            resolved protocol and the data's fingerprint only.
        sweep: ``sweep.json`` as a dict (wsol_* suites, ``bench sweep``), or None.
    """

    path: Path | None
    summary: dict[str, Any]
    records: pd.DataFrame
    manifest: dict[str, Any]
    sweep: dict[str, Any] | None = None

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else repr(str(self.path))
        return f"Run({where}, images={self.summary.get('images')})"


def load_run(path: PathLike) -> Run:
    """Read a finished run folder (manifest, summary, records, sweep.json when there is one).

    Raises:
        FileNotFoundError: ``path`` is not a finished run.
    """
    run = RunDir(Path(path))
    if not run.is_complete():
        raise FileNotFoundError(f"{run.path}: not a finished run (no summary.json / records.csv.gz)")
    sweep_file = run.path / "sweep.json"
    sweep = json.loads(sweep_file.read_text()) if sweep_file.is_file() else None
    return Run(run.path, run.read_summary(), run.read_records(), run.read_manifest(), sweep)


def _out(out: PathLike | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="wsol-bench-")) if out is None else Path(out)


def _path(value: PathLike | None) -> Path | None:
    return None if value is None else Path(value)


def evaluate(
    model: str | nn.Module,
    data: PathLike,
    suite: str = "ilsvrc_loc",
    out: PathLike | None = None,
    *,
    weights: PathLike | None = None,
    method: str | None = None,
    layer: str | None = None,
    classifier: str | None = None,
    reshape: str | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    pretrained: bool = True,
    num_classes: int | None = None,
    label: str | None = None,
    gt_layout: str = "auto",
    images: PathLike | None = None,
    split: str | None = None,
    metadata: PathLike | None = None,
    masks: PathLike | None = None,
    select_on: str | None = None,
    step: float | None = None,
    box_threshold: float | None = None,
    limit: int | None = None,
    device: str = "auto",
    batch_size: int = 32,
    workers: int | None = 0,
    decode: str = "auto",
    shard_size: int = 1000,
    amp: str = "off",
    channels_last: bool = False,
    save_cams: bool = False,
    box_workers: int | None = None,
    extra_metrics: bool = False,
    difficult_flags: PathLike | None = None,
    progress: bool = True,
) -> Run:
    """Evaluate ``model`` on the data under ``data`` with ``suite``: `bench run`, from Python.

    Every keyword is the `bench run` flag of the same name (``--select-on`` is ``select_on``...).

    Args:
        model: a registry name, a model string (``"pkg.mod:factory"``, ``"path/file.py:factory"``,
            ``"timm/NAME"``, ``"torchvision/NAME"``, an entry-point name) or an ``nn.Module``.
        data: the data root (any layout `bench run` reads).
        suite: suite name or .toml path.
        out: results root (None: a new temporary folder).
        weights: a state-dict file. method: the map method (``cam``, ``gradcam``, ``gradcampp``,
            ``backprop``, library methods); None = the suite's. layer: Grad-CAM layer (registry
            models) or the feature layer of a user model; classifier, reshape, input_size, mean,
            std, pretrained, num_classes: how to build and feed a user model (num_classes: timm/ and
            torchvision/ models). label: the run's name in tables.
        gt_layout, images, split, metadata, masks: where and how the ground truth is read.
        select_on: the split on which a threshold is chosen (wsol tau, or a top-5 suite's box
            threshold). step: the wsol threshold grid step (None: the suite's). box_threshold:
            the crop suites' fixed tau (None: the suite's per-backbone default).
        limit: score the first N images only. device: ``'auto'`` (resolved), ``'cpu'``, ``'cuda'``...
        batch_size, workers (DataLoader decode processes; 0 here: none), decode, shard_size, amp,
            channels_last, save_cams, box_workers, progress: as the flags.
        extra_metrics: also write the saliency scores of the GT-class maps (``saliency.json``).
        difficult_flags: pointing_*_difficult suites: the EBP flag list (default: torchray's).

    Returns:
        The :class:`Run` of the suite itself (companion suites run too, into ``out``).
    """
    model_options = ModelOptions(
        pretrained=pretrained, num_classes=num_classes, classifier=classifier, reshape=reshape, input_size=input_size, mean=mean, std=std,
    )  # fmt: skip
    request = SuiteRequest(
        suite=suite, models=[model], data=Path(data), weights=[Path(weights)] if weights is not None else (),
        gt_layout=gt_layout, images=_path(images), out=_out(out), method=method, layer=layer,
        labels=[label] if label is not None else (), split=split, metadata=_path(metadata), masks=_path(masks),
        select_on=select_on, step=step, box_threshold=box_threshold, model_options=model_options, verbose=False,
    )  # fmt: skip
    config = RunConfig(
        device=resolve_device(device), batch_size=batch_size, workers=workers, limit=limit, shard_size=shard_size,
        progress=progress, amp=amp, channels_last=channels_last, save_cams=save_cams, box_workers=box_workers, decode=decode,
    )  # fmt: skip
    runs = run_requested_suite(request, config, extra_metrics=extra_metrics, difficult_flags=_path(difficult_flags))
    return load_run(runs[0].path)


def score_maps(
    maps: PathLike | Iterable[Sequence[Any]],
    data: PathLike,
    suite: str = "ilsvrc_loc",
    out: PathLike | None = None,
    *,
    name: str | None = None,
    gt_layout: str = "auto",
    images: PathLike | None = None,
    split: str | None = None,
    metadata: PathLike | None = None,
    masks: PathLike | None = None,
    workers: int = 0,
    progress: bool = False,
) -> Run:
    """Score maps made elsewhere: `bench score`, from Python.

    Args:
        maps: a folder of ``.npy``/``.npz`` maps (README "Score saved maps"), or an iterable of
            ``(image_id, classes, maps[, scores])``: ``classes`` None and ``maps`` ``(h, w)`` for a
            GT-class map, else ``classes`` (k,) and ``maps`` (k, h, w) (numpy or torch).
        data: the data root; gt_layout, images, split, metadata, masks: how to read it (as `bench score`).
        suite: suite name or .toml path.
        out: results root. For a folder, None writes the run to a new temporary folder. For items,
            None scores them in memory through the metric objects (:mod:`bench.metrics`) and writes
            nothing: the :class:`Run` has ``path`` None and the same summary, records and sweep as
            the run folder; with ``out`` the items are written into the run folder's ``maps/`` and
            scored from there, so the run keeps its maps.
        name: run name (default ``maps-<folder name>``, ``maps`` for items).
        workers: processes for the per-image work of a run folder (0: inline).

    Returns:
        The :class:`Run`.
    """
    from bench.core.protocol import load_protocol

    where = dict(gt_layout=gt_layout, images=images, split=split, metadata=metadata, masks=masks)
    if isinstance(maps, (str, os.PathLike)):
        run = score_folder(maps, data, suite, _out(out), name=name, workers=workers, progress=progress, **where)
        return load_run(run.path)
    protocol = load_protocol(suite)
    if out is None:
        from bench.data.open import open_dataset
        from bench.run.in_memory import score_items

        root = Path(data)
        blacklist = (root / protocol.blacklist) if protocol.blacklist else None
        valset = open_dataset(root, layout=gt_layout, images=images, split=split, blacklist=blacklist, metadata=metadata, masks=masks)
        scored = score_items(maps, valset, protocol, name=name or "maps", progress=progress)
        manifest = {"protocol_hash": protocol.hash, "protocol": protocol.resolved(), "data": {"fingerprint": valset.fingerprint()}}
        return Run(None, scored.summary, scored.records, manifest, scored.sweep)
    run_dir = RunDir(Path(out) / protocol.name / (name or "maps"))
    if run_dir.exists():
        raise FileExistsError(f"{run_dir.path} already holds a run; choose another out or name")
    folder = write_maps(maps, run_dir.path / "maps")
    run = score_folder(folder, data, suite, run=run_dir, workers=workers, progress=progress, **where)
    return load_run(run.path)
