"""The Python API: evaluate a model, score saved maps, load a run (same code path as the CLI).

``bench.evaluate`` is ``bench run`` (:func:`bench.run.suite.run_named_suite`), ``bench.score_maps``
is ``bench score`` (:func:`bench.run.score.score_folder`); both return a :class:`Run` of the
finished run folder. ``out=None`` writes to a fresh temporary folder (kept: the returned
``Run.path`` points into it; delete it when done).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from bench.models.resolve import ModelOptions
from bench.run.engine import RunConfig
from bench.run.results import RunDir
from bench.run.score import score_folder, write_maps
from bench.run.suite import SuiteRequest, run_named_suite
from bench.runtime import resolve_device

__all__ = ["Run", "evaluate", "score_maps", "load_run"]

_MODEL_OPTIONS = {f.name for f in fields(ModelOptions)} - {"method", "weights", "layer"}
_CONFIG_OPTIONS = {f.name for f in fields(RunConfig)}
_REQUEST_OPTIONS = ("method", "layer", "gt_layout", "images", "split", "metadata", "masks", "select_on", "step", "box_threshold")


@dataclass(frozen=True)
class Run:
    """A finished run folder.

    Attributes:
        path: the run folder (``OUT/<suite>/<model>``).
        summary: ``summary.json`` as a dict (the metrics of the README's protocol section).
        records: one row per image (``records.csv.gz``; columns in :mod:`bench.run.results`).
        manifest: ``manifest.json`` as a dict (what was run).
    """

    path: Path
    summary: dict[str, Any]
    records: pd.DataFrame
    manifest: dict[str, Any]

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, images={self.summary.get('images')})"


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a finished run folder (manifest, summary, records).

    Raises:
        FileNotFoundError: ``path`` is not a finished run.
    """
    run = RunDir(Path(path))
    if not run.is_complete():
        raise FileNotFoundError(f"{run.path}: not a finished run (no summary.json / records.csv.gz)")
    return Run(run.path, run.read_summary(), run.read_records(), run.read_manifest())


def _out(out: str | os.PathLike[str] | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="wsol-bench-")) if out is None else Path(out)


def evaluate(
    model: str | nn.Module,
    data: str | os.PathLike[str],
    suite: str = "ilsvrc_loc",
    out: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Run:
    """Evaluate ``model`` on the data under ``data`` with ``suite``: `bench run`, from Python.

    Args:
        model: a registry name, a model string (``"pkg.mod:factory"``, ``"path/file.py:factory"``,
            ``"timm/NAME"``, ``"torchvision/NAME"``, an entry-point name) or an ``nn.Module``.
        data: ILSVRC-layout data root.
        suite: suite name or .toml path.
        out: results root (None: a new temporary folder).
        **options: ``bench run`` flags by their Python names: ``weights``, ``method``, ``layer``,
            ``classifier``, ``reshape``, ``input_size``, ``mean``, ``std``, ``pretrained``,
            ``gt_layout``, ``images``, ``split``, ``metadata``, ``masks``, ``select_on``, ``step``, ``box_threshold``, ``limit``, ``device`` (``'auto'`` resolved), ``batch_size``,
            ``workers`` (default 0 here: no DataLoader processes), ``amp``, ``channels_last``,
            ``save_cams``, ``shard_size``, ``box_workers``, ``progress``.

    Returns:
        The :class:`Run` of the suite itself (companion suites run too, into ``out``).
    """
    opts = dict(options)
    model_opts = {k: opts.pop(k) for k in list(opts) if k in _MODEL_OPTIONS}
    config_opts = {k: opts.pop(k) for k in list(opts) if k in _CONFIG_OPTIONS}
    config_opts["device"] = resolve_device(config_opts.get("device", "auto"))
    config_opts.setdefault("workers", 0)
    weights = opts.pop("weights", None)
    request_opts = {k: opts.pop(k) for k in _REQUEST_OPTIONS if k in opts}
    if opts:
        raise TypeError(f"evaluate() got unknown options {sorted(opts)}")
    request = SuiteRequest(
        suite=suite, models=[model], data=Path(data), weights=[Path(weights)] if weights is not None else (),
        out=_out(out), model_options=ModelOptions(**model_opts), verbose=False, **request_opts,
    )  # fmt: skip
    runs = run_named_suite(request, RunConfig(**config_opts))
    return load_run(runs[0].path)


def score_maps(
    maps: str | os.PathLike[str] | Iterable[Sequence[Any]],
    data: str | os.PathLike[str],
    suite: str = "ilsvrc_loc",
    out: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    workers: int = 0,
    progress: bool = False,
) -> Run:
    """Score saved maps: `bench score`, from Python.

    Args:
        maps: a folder of ``.npy``/``.npz`` maps (README "Score saved maps"), or an iterable of
            ``(image_id, classes, maps[, scores])``: ``classes`` None and ``maps`` ``(h, w)`` for a
            GT-class map, else ``classes`` (k,) and ``maps`` (k, h, w) (numpy or torch). Items are
            written into the run folder's ``maps/`` first, so the run keeps its maps.
        data, suite, out: as for :func:`evaluate`.
        name: run name (default ``maps-<folder name>``, ``maps`` for items).

    Returns:
        The :class:`Run`.
    """
    root = _out(out)
    if isinstance(maps, (str, os.PathLike)):
        run = score_folder(maps, data, suite, root, name=name, workers=workers, progress=progress)
    else:
        from bench.core.protocol import load_protocol

        run_dir = RunDir(root / load_protocol(suite).name / (name or "maps"))
        if run_dir.exists():
            raise FileExistsError(f"{run_dir.path} already holds a run; choose another out or name")
        folder = write_maps(maps, run_dir.path / "maps")
        run = score_folder(folder, data, suite, run=run_dir, workers=workers, progress=progress)
    return load_run(run.path)
