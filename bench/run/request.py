"""What `bench run` was asked for (:class:`SuiteRequest`): the typed request the CLI and the Python
API hand to :mod:`bench.run.suite` and that the follow-up steps (:mod:`bench.run.select_on`,
:mod:`bench.run.wsol_suite`) read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from bench.models.resolve import ModelOptions

__all__ = ["SuiteRequest"]


@dataclass(frozen=True)
class SuiteRequest:
    """What `bench run` was asked for; None/empty means "the suite's default"."""

    suite: str
    models: Sequence[str | nn.Module] = ()  # registry names, model strings (bench.models.resolve) or nn.Modules
    data: Path | None = None
    weights: Sequence[Path] = ()
    gt_layout: str = "auto"
    images: Path | None = None
    out: Path = Path("results")
    method: str | None = None  # --method: overrides the suite's [cam] method (recorded in the protocol)
    layer: str | None = None  # --layer: Grad-CAM layer (registry models); feature layer of user models
    labels: Sequence[str] = ()  # --label: one per model, in order (the run's name in tables)
    split: str | None = None  # --split: test (default of split layouts), train-fullsup, train, all
    metadata: Path | None = None  # --metadata: wsol metadata folder
    masks: Path | None = None  # --masks: folder the wsol mask paths are relative to
    select_on: str | None = None  # --select-on: split on which the threshold is chosen (wsol tau, or the box threshold of top5 suites)
    step: float | None = None  # --step: wsol threshold grid step (default: the suite's)
    box_threshold: float | None = None  # --box-threshold: top5 suites' box threshold (crop suites: tau; default per backbone)
    model_options: ModelOptions = field(default_factory=ModelOptions)  # --classifier, --reshape, --input-size...
    verbose: bool = True  # notes on flags that change nothing, pointing runs' results (the CLI); the Python API passes False
