"""After a wsol_* suite's run: wsolevaluation's sweeps (:mod:`bench.core.wsol`) and, with
``--select-on``, the threshold chosen on another split.

The run itself is an ordinary `bench run` (records with the suite's top-5 rules, CAM cache kept);
this step scores the cached GT-class maps as wsolevaluation's code does and writes ``sweep.json`` /
``sweep_curves.csv`` in the run folder. Every ``sweep.json`` says where its threshold was chosen:
``threshold_chosen_on`` is ``"test (maximum over tau on the scored split)"`` unless ``--select-on
train-fullsup`` ran the same model on that split (run folder ``<model>@train-fullsup`` beside the
test run), took its best tau per metric, and reported the test split's BoxAcc at that tau
(``selected`` in sweep.json). wsolevaluation itself warns that the maximum over tau on the test
split is optimistic.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.protocol import Protocol
from bench.data.open import open_dataset
from bench.models import BenchModel, WeightsInfo
from bench.run.engine import RunConfig, run_suite
from bench.run.request import SuiteRequest
from bench.run.results import RunDir, atomic_write_json
from bench.run.sweeps import write_wsol_sweep, wsol_sweep_run

__all__ = ["finish_wsol_run", "select_threshold", "sweep_finished_run"]

ON_TEST = "test (maximum over tau on the scored split)"


def select_threshold(chosen: dict[str, Any], curves: pd.DataFrame) -> dict[str, Any]:
    """BoxAcc of ``curves`` (the reported split) at the taus that were best in ``chosen`` (another
    split's sweep.json results): MaxBoxAcc at delta 50 and MaxBoxAccV2's per-delta mean."""
    taus = curves["tau"].to_numpy()

    def at(column: str, tau: float) -> float:
        i = int(abs(taus - tau).argmin())
        return float(curves[column].iloc[i])

    out: dict[str, Any] = {}
    if chosen.get("best_tau") is not None:
        out["tau"] = chosen["best_tau"]
        out["maxboxacc"] = at("boxacc_50", chosen["best_tau"])
    per = {int(d): at(f"boxacc_v2_{d}", t) for d, t in chosen["best_tau_v2"].items()}
    out["tau_v2"] = {int(d): t for d, t in chosen["best_tau_v2"].items()}
    out["maxboxacc_v2_per_delta"] = per
    out["maxboxacc_v2"] = sum(per.values()) / len(per)
    return out


def fresh_sweep(run: RunDir, step: float, chosen_on: str) -> dict[str, Any] | None:
    """The run's ``sweep.json`` when it is up to date: same step, threshold chosen on ``chosen_on``,
    written after the run's summary (so after the records it sweeps); else None. A rerun that finds
    it recomputes and writes nothing."""
    path, curves = run.path / "sweep.json", run.path / "sweep_curves.csv"
    if not (path.is_file() and curves.is_file() and run.summary_path.is_file()):
        return None
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    newer = path.stat().st_mtime_ns >= run.summary_path.stat().st_mtime_ns
    same = held.get("step") == step and held.get("rules") == "wsol" and held.get("threshold_chosen_on") == chosen_on
    return held if newer and same else None


def sweep_finished_run(protocol: Protocol, run: RunDir, *, step: float | None = None, progress: bool = True,
                       counts: Any = None) -> dict[str, Any]:  # fmt: skip
    """wsolevaluation's sweeps of a finished run's GT-class maps (its map cache, or a score run's saved
    maps), written to sweep.json / sweep_curves.csv; the threshold is the maximum over tau on the
    scored split, and sweep.json says so. ``step`` defaults to the suite's. An up-to-date sweep
    (:func:`fresh_sweep`) is returned as it is. ``counts``: the run's hit counts already accumulated
    at the suite's step (a :class:`bench.core.wsol.BoxAccumulator`, boxes-only data; `bench score`
    feeds them during its records pass), written instead of reading the maps again."""
    step = protocol.wsol_step if step is None else step
    held = fresh_sweep(run, step, ON_TEST)
    if held is not None:
        return held
    if counts is not None and step == protocol.wsol_step:
        results = write_wsol_sweep(run, counts, None, step, len(run.read_records()))
    else:
        results = wsol_sweep_run(run, step=step, progress=progress)
    results["threshold_chosen_on"] = ON_TEST
    atomic_write_json(run.path / "sweep.json", results)
    return results


def finish_wsol_run(
    protocol: Protocol, request: SuiteRequest, run: RunDir, model: BenchModel, info: WeightsInfo, config: RunConfig, data: Path,
    blacklist: Path | None,
) -> dict[str, Any]:
    """Sweep the finished run; with ``request.select_on``, also run and sweep that split and
    report the test split at its thresholds. Returns the sweep results (as in sweep.json)."""
    step = request.step if request.step is not None else protocol.wsol_step
    side = RunDir(run.path.parent / f"{run.path.name}@{request.select_on}") if request.select_on else None
    held = fresh_sweep(run, step, request.select_on or ON_TEST)
    if held is not None and (side is None or side.is_complete()):
        return held  # nothing recomputed, nothing written
    results = sweep_finished_run(protocol, run, step=step, progress=config.progress)
    curves = pd.read_csv(run.path / "sweep_curves.csv")
    if request.select_on:
        other = open_dataset(
            data, layout=request.gt_layout, images=request.images, split=request.select_on, blacklist=blacklist,
            metadata=None, masks=request.masks,
        )
        assert side is not None
        run_suite(protocol, other, model, info, side, replace(config, save_cams=True), command=sys.argv)
        chosen = wsol_sweep_run(side, step=step, progress=config.progress)
        results["threshold_chosen_on"] = request.select_on
        results["selected"] = {"split": request.select_on, "run": str(side.path), **select_threshold(chosen, curves)}
    atomic_write_json(run.path / "sweep.json", results)
    return results

