"""``bench run --select-on SPLIT`` for the top-k suites: the box threshold chosen on another split.

wsolevaluation warns that a threshold tuned on the split that is reported is optimistic. For a
``wsol_*`` suite the threshold tau is chosen on ``SPLIT`` by :mod:`bench.run.wsol_suite`. For a top-k
suite (``top5`` heuristic, ``largest_cc``: e.g. ``cub_loc``) this module does the same for the box
threshold: the model runs on ``SPLIT`` (run folder ``<model>@<SPLIT>`` beside the reported one, with
its map cache), the threshold curve of that run (:func:`bench.analysis.curves.threshold_curve`, from
the cache) gives the top-1 localization accuracy at every threshold of
:data:`bench.analysis.curves.DEFAULT_THRESHOLDS`, and the best one (the smallest of equals) becomes
the reported run's box threshold. The reported run's protocol records it (so its hash differs from
the suite's default) and its ``summary.json`` says where it was chosen.

Crop suites (``input.pipeline = "crop"``) use their own curve (:mod:`bench.run.crop_select`: the crop
rules, class-averaged Top-1 Loc). ``--select-on test`` (crop suites only) picks the threshold on the
reported split itself, as some papers do; it is optimistic, and the summary's
``box_threshold_chosen_on`` says so (:data:`ON_TEST`).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.analysis.curves import DEFAULT_THRESHOLDS, threshold_curve
from bench.core.protocol import Protocol
from bench.data.open import open_dataset
from bench.models import BenchModel, WeightsInfo
from bench.run.engine import RunConfig, run_suite
from bench.run.request import SuiteRequest
from bench.run.results import RunDir
from bench.runtime import RunError

__all__ = ["choose_box_threshold", "record_choice", "ON_TEST"]

#: How a threshold chosen on the reported split is labelled in the summary and in tables.
ON_TEST = "test (best on the reported split itself: optimistic)"


def choose_box_threshold(
    protocol: Protocol, request: SuiteRequest, run: RunDir, model: BenchModel, info: WeightsInfo, config: RunConfig, data: Path,
    blacklist: Path | None,
) -> tuple[Protocol, dict[str, Any]]:
    """Run ``model`` on ``request.select_on`` and return the protocol with the box threshold that
    maximises top-1 localization accuracy there, and what was chosen (for the summary).

    Raises:
        RunError: the suite is not a top-5 ``largest_cc`` suite (tight/loose and the release rule
            have fixed thresholds of their own).
    """
    split = request.select_on
    if protocol.heuristic != "top5" or protocol.box_rule not in ("largest_cc", "crop_largest_cc"):
        raise RunError(
            f"--select-on {split}: {protocol.name} uses {protocol.heuristic} / {protocol.box_rule}, whose thresholds are "
            "fixed; --select-on chooses the box threshold of top5 largest_cc suites and the tau of wsol_* suites"
        )
    if split == "test" and protocol.pipeline != "crop":
        raise RunError(f"--select-on test: only crop suites (e.g. ilsvrc_loc_crop) take the threshold chosen on the reported split")
    other = open_dataset(
        data, layout=request.gt_layout, images=request.images, split=request.split if split == "test" else split,
        blacklist=blacklist, metadata=request.metadata, masks=request.masks,
    )  # fmt: skip
    side = RunDir(run.path.parent / f"{run.path.name}@{split}")
    run_suite(protocol, other, model, info, side, replace(config, save_cams=True), command=sys.argv)
    if protocol.pipeline == "crop":
        from bench.run.crop_select import crop_threshold_curve

        curve = crop_threshold_curve(side, protocol, progress=config.progress).rename(columns={"tau": "threshold"})
    else:
        curve = threshold_curve(side.path, DEFAULT_THRESHOLDS)
    best = curve["top1_loc_acc"].max()
    threshold = float(curve.loc[curve["top1_loc_acc"] == best, "threshold"].min())
    choice = {
        "box_threshold": threshold,
        "box_threshold_chosen_on": ON_TEST if split == "test" else split,
        "box_threshold_run": str(side.path),
        "box_threshold_top1_loc_acc_on_split": float(best),
    }
    return protocol.with_threshold(threshold), choice


def record_choice(run: RunDir, choice: dict[str, Any]) -> dict[str, Any]:
    """Add the chosen threshold and where it was chosen to the run's ``summary.json``; returns it."""
    summary = run.read_summary()
    if any(summary.get(k) != v for k, v in choice.items()):  # a rerun of a finished run writes nothing
        summary.update(choice)
        run.write_summary(summary)
    return summary
