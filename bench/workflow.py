"""`bench run` for any suite: one entry for the CLI and :func:`bench.evaluate` (the top layer).

Pointing suites (multi-label, one record per (image, class) pair) go to their runner
(:mod:`bench.run.pointing`); every other suite to :func:`bench.run.suite.run_named_suite`, after
which the suite's paper tables are written (:func:`bench.report.tables.write_suite_tables`, rank 0).
With ``extra_metrics`` each finished single-label run's GT-class maps are then scored with the
saliency scores (:mod:`bench.run.extra_metrics`: ``saliency.csv.gz`` and ``saliency.json`` in the run
folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.core.protocol import Protocol, load_protocol
from bench.report.tables import write_suite_tables
from bench.run.engine import RunConfig
from bench.run.extra_metrics import score_run_saliency
from bench.run.pointing import run_pointing_suite
from bench.run.results import RunDir
from bench.run.suite import SuiteRequest, SuiteRun, run_named_suite
from bench.runtime import dist_env

__all__ = ["run_requested_suite"]


def run_requested_suite(
    request: SuiteRequest,
    config: RunConfig,
    *,
    extra_metrics: bool = False,
    difficult_flags: Path | None = None,
    on_run: Callable[[SuiteRun], None] | None = None,
    on_tables: Callable[[Protocol, list[Path]], None] | None = None,
) -> list[RunDir]:
    """Run ``request.suite`` on ``request.models``; returns the run folders (the suite's first).

    ``difficult_flags``: pointing_*_difficult suites only, the EBP flag list (default: torchray's).
    ``on_run`` / ``on_tables``: single-label suites, each finished run (as
    :func:`bench.run.suite.run_named_suite` hands it) and the table files written (the CLI prints
    them; pointing runs report themselves).
    """
    protocol = load_protocol(request.suite)
    if protocol.pointing:
        return run_pointing_suite(request, config, difficult_flags=difficult_flags)
    runs = run_named_suite(request, config, on_run=on_run)
    if protocol.tables and dist_env()[0] == 0:
        written = write_suite_tables(protocol, request.out)
        if on_tables is not None:
            on_tables(protocol, written)
    if extra_metrics:
        for run in runs:
            score_run_saliency(run.path, device=config.device, data_root=request.data, progress=config.progress)
    return runs
