"""`bench run`: resolve a suite's defaults, run each model, run companion suites, write tables.

A suite file's optional ``[suite]`` table (see :mod:`bench.core.protocol`) supplies the models and data
when the command line leaves them out (``data = "generated"`` is the embedded generated data set,
made on first use into the cache), names companion suites to run on the same models and data, and
lists the paper tables to write under ``OUT/<suite>/tables/`` (CSV, Markdown, LaTeX).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.data.open import open_dataset
from bench.run.engine import RunConfig, run_suite, shutdown_distributed
from bench.runtime import RunError
from bench.models import build_model
from bench.core.protocol import Protocol, load_protocol
from bench.run.results import RunDir

__all__ = ["SuiteRequest", "resolve_data", "run_folder", "run_named_suite", "write_tables"]


@dataclass(frozen=True)
class SuiteRequest:
    """What `bench run` was asked for; None/empty means "the suite's default"."""

    suite: str
    models: Sequence[str] = ()
    data: Path | None = None
    weights: Sequence[Path] = ()
    gt_layout: str = "auto"
    images: Path | None = None
    out: Path = Path("results")
    method: str | None = None  # --method: overrides the suite's [cam] method (recorded in the protocol)
    layer: str | None = None  # --layer: Grad-CAM layer
    split: str | None = None  # --split: test (default of split layouts), train-fullsup, train, all
    metadata: Path | None = None  # --metadata: wsol metadata folder
    masks: Path | None = None  # --masks: folder the wsol mask paths are relative to
    select_on: str | None = None  # --select-on: split on which wsol suites choose their threshold
    step: float | None = None  # --step: wsol threshold grid step (default: the suite's)


def resolve_data(protocol: Protocol, data: Path | None) -> Path:
    """The data root: the --data flag, else the suite's default (``generated`` -> the cached generated set)."""
    if data is not None:
        return data
    if protocol.default_data == "generated":
        from bench.data.synthetic import ensure_dataset, val_root

        return val_root(ensure_dataset(progress=True))
    if protocol.default_data:
        return Path(protocol.default_data)
    raise RunError(f"suite {protocol.name} has no default data: pass --data DIR (an ILSVRC-layout val folder)")


def write_tables(protocol: Protocol, out: Path) -> list[Path]:
    """Write the suite's tables (from every run under ``out``) as CSV, Markdown and LaTeX."""
    from bench.report.tables import load_runs, paper_table, render, table_caption

    runs = [r for r in load_runs([out]) if r.suite in (protocol.name, *protocol.companions)]
    written = []
    for number in protocol.tables:
        frame = paper_table(runs, number, with_paper=False, suite=protocol.name)
        for fmt, ext in (("csv", "csv"), ("md", "md"), ("latex", "tex")):
            path = out / protocol.name / "tables" / f"table{number}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(frame, fmt, caption=table_caption(number)))
            written.append(path)
    return written


def run_folder(out: Path, protocol: Protocol, model: str) -> RunDir:
    """``OUT/<suite>/<model>`` for CAM runs, ``OUT/<suite>/<model>-<method>`` for gradient-map runs."""
    suffix = "" if protocol.cam_method == "cam" else f"-{protocol.cam_method}"
    return RunDir(out / protocol.name / f"{model}{suffix}")


def run_named_suite(request: SuiteRequest, config: RunConfig) -> list[RunDir]:
    """Run the suite (and its companions) for every model; returns the run folders."""
    protocol = load_protocol(request.suite).with_method(request.method, request.layer)
    models = list(request.models) or list(protocol.default_models)
    if not models:
        raise RunError(f"suite {protocol.name} names no default models: pass --model NAME")
    if len(request.weights) > len(models):
        raise RunError("more --weights than --model; give one --weights per --model, in order")
    data = resolve_data(protocol, request.data)
    protocols = [protocol, *(load_protocol(c).with_method(request.method, request.layer) for c in protocol.companions)]
    runs: list[RunDir] = []
    try:
        for p in protocols:
            blacklist = (data / p.blacklist) if p.blacklist else None
            valset = open_dataset(data, layout=request.gt_layout, images=request.images, split=request.split, blacklist=blacklist, metadata=request.metadata, masks=request.masks)
            for i, name in enumerate(models):
                model, info = build_model(name, request.weights[i] if i < len(request.weights) else None)
                run = run_folder(request.out, p, model.spec.name)  # caffe:/x/NET.pt -> NET
                summary = run_suite(p, valset, model, info, run, _run_config(p, config), command=sys.argv)
                runs.append(run)
                if summary is not None:  # rank 0 (or a single process) reports
                    print(f"{name} on {p.name}: results in {run.path}")
                    print(json.dumps(summary, indent=2))
                    if p.wsol_evaluation:
                        from bench.run.wsol_suite import finish_wsol_run

                        print(json.dumps(finish_wsol_run(p, request, run, model, info, config, data, blacklist), indent=2))
    finally:
        shutdown_distributed()
    if protocol.tables and _is_rank0():
        for path in write_tables(protocol, request.out):
            print(f"wrote {path}")
        from bench.report.tables import load_runs, paper_table, render

        print(render(paper_table(load_runs([request.out]), 2, suite=protocol.name), "md"))
    return runs


def _run_config(protocol: Protocol, config: RunConfig) -> RunConfig:
    """wsol suites score the cached GT-class maps after the run: they always keep a CAM cache."""
    from dataclasses import replace

    return replace(config, save_cams=True) if protocol.wsol_evaluation else config


def _is_rank0() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0
