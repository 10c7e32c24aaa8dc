"""`bench run`: resolve a suite's defaults, run each model, run companion suites, write tables.

A suite file's optional ``[suite]`` table (see :mod:`bench.core.protocol`) supplies the models and data
when the command line leaves them out (``data = "generated"`` is the embedded generated data set,
made on first use into the cache), names companion suites to run on the same models and data, and
lists the paper tables to write under ``OUT/<suite>/tables/`` (CSV, Markdown, LaTeX).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from bench.data.dataset import Dataset
from bench.data.open import open_dataset
from bench.run.engine import RunConfig, run_suite, shutdown_distributed
from bench.extras import needed_extras, require_extras
from bench.runtime import RunError, dist_env
from bench.models import BenchModel, WeightsInfo
from bench.models.resolve import is_registry_model, resolve_model
from bench.core.protocol import Protocol, load_protocol
from bench.run.request import SuiteRequest
from bench.run.results import RunDir

__all__ = ["SuiteRequest", "SuiteRun", "RunInterrupted", "suite_runs", "check_classes", "check_extra", "check_flags", "model_class_ids", "model_class_names", "resolve_data", "run_folder", "run_named_suite"]


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


def run_folder(
    out: Path, protocol: Protocol, model: str, *, label: str | None = None, limit: int | None = None,
    layer: str | None = None, reshape: str | None = None,
) -> RunDir:  # fmt: skip
    """``OUT/<suite>/<name>``: the name is the ``--label`` (made file-name safe) or else the model, then
    ``-<method>`` for other map methods (``grad-cam:ScoreCAM`` -> ``-grad-cam-ScoreCAM``), ``-layer-<L>`` with ``--layer``, ``-<reshape>`` with
    ``--reshape`` and ``-limit<N>`` with ``--limit``, so a smoke test or another layer never shares
    a folder with the full run. A plain full CAM run is ``OUT/<suite>/<model>``."""
    name = _file_safe(label) if label else model
    if protocol.cam_method != "cam":
        name += "-" + protocol.cam_method.replace(":", "-")  # grad-cam:X -> -grad-cam-X
    if layer:
        name += f"-layer-{_file_safe(layer)}"
    if reshape:
        name += f"-{reshape}"
    if limit is not None:
        name += f"-limit{limit}"
    return RunDir(out / protocol.name / name)


def _file_safe(text: str) -> str:
    """``text`` as one folder name: runs of other characters than letters, digits, ``_ . -`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "run"


class RunInterrupted(RunError):
    """Ctrl-C during a run; the message says how far it got and how to resume."""


def check_library_method(method: str | None) -> None:
    """Refuse a library method (``grad-cam:NAME``, ``torchcam:NAME``) whose extra is missing or whose NAME
    the library lacks, in one line (the names that exist / the pip command), before any file is written.
    (The extra itself is in :mod:`bench.extras`' table; this also checks NAME against the library.)"""
    from bench.core.library_methods import LibraryMethodError, check_method, is_library_method

    if method is None or ":" not in method:
        return
    if not is_library_method(method):
        raise RunError(f"--method {method}: unknown library; use grad-cam:NAME or torchcam:NAME")
    try:
        check_method(method)
    except LibraryMethodError as exc:
        raise RunError(str(exc)) from None


def check_extra(name: str) -> None:
    """Refuse a model whose optional dependency is not installed, naming the extra to install
    (:mod:`bench.extras`, the one table of extras)."""
    require_extras(needed_extras(models=[name]))


#: --model options of user models (not registry or Caffe models): (ModelOptions field, flag)
_USER_MODEL_FLAGS = (("classifier", "--classifier"), ("reshape", "--reshape"), ("input_size", "--input-size"),
                     ("mean", "--mean"), ("std", "--std"))  # fmt: skip


def check_flags(request: SuiteRequest, protocols: Sequence[Protocol], models: Sequence[Any]) -> None:
    """Flags that apply to none of the models or suites: an error where the result would look as if
    they had been applied (model options), a one-line note on stderr where nothing is changed by them."""
    options = request.model_options
    user = [m for m in models if not is_registry_model(m)]
    for field_name, flag in _USER_MODEL_FLAGS:
        if getattr(options, field_name) is not None and not user:
            raise RunError(
                f"{flag} applies to your own models (timm/, torchvision/, module:factory, file.py:factory); "
                f"{', '.join(map(str, models))} {'is a registry model' if len(models) == 1 else 'are registry models'} with fixed settings: drop {flag}"
            )
    if options.num_classes is not None and not any(isinstance(m, str) and m.startswith(("timm/", "torchvision/")) for m in models):
        raise RunError("--num-classes applies to timm/ and torchvision/ models only (others define their classifier): drop --num-classes")
    if request.step is not None and not any(p.wsol_evaluation for p in protocols) and request.verbose:
        print(f"note: --step applies to the wsol_* suites' threshold sweep; {protocols[0].name} has none, so it is ignored", file=sys.stderr)


def model_class_ids(model: BenchModel, weights: WeightsInfo) -> tuple[str, ...] | None:
    """The class ids (WNIDs) the model's outputs stand for, in output order; None when unknown.

    A checkpoint written by `bench train` (the shipped demo nets included) says so in its JSON
    sidecar (``data.classes``); a 1000-way registry ImageNet model predicts the 1000 ILSVRC classes
    in sorted-WNID order.
    """
    if weights.path is not None:
        sidecar = Path(f"{weights.path}.json")
        if sidecar.is_file():
            try:
                classes = json.loads(sidecar.read_text()).get("data", {}).get("classes")
            except (OSError, ValueError):
                classes = None
            if isinstance(classes, list) and classes:
                return tuple(str(c) for c in classes)
    if model.num_classes == 1000 and not model.spec.name.startswith("simplecnn"):
        from bench.data.classes import load_wnids

        return tuple(load_wnids())
    return None


def model_class_names(model_ids: Sequence[str] | None) -> tuple[str, ...] | None:
    """Readable names of known class ids (the 1000 ImageNet WNIDs, the generated data's ids), else None."""
    if model_ids is None:
        return None
    from bench.data import synthetic
    from bench.data.classes import load_class_names, load_wnids

    known = dict(zip(load_wnids(), load_class_names())) | dict(zip(synthetic.WNIDS, synthetic.CLASS_NAMES))
    names = [known.get(i) for i in model_ids]
    return None if any(n is None for n in names) else tuple(names)  # type: ignore[arg-type]


def _same_name(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()

    return norm(a) == norm(b)


def check_classes(name: str, model_ids: Sequence[str] | None, dataset: Dataset) -> None:
    """Refuse a model whose classes are not the data's classes, compared id by id, in order.

    The one allowance: the CUB layout, which has its own id scheme (``classes.txt``: ``001.cart``
    for the generated data's ``n90000001`` "cart"), passes when the class *names* agree one by
    one. ``model_ids`` None (unknown), or data whose classes are integer labels only (wsolevaluation
    metadata: its class "ids" are image folder names, ``class_source == 'wsol-folders'``), leave
    only the engine's count check.
    """
    data_ids = tuple(dataset.class_ids)
    if model_ids is None or tuple(model_ids) == data_ids or dataset.class_source == "wsol-folders":
        return
    model_names, data_names = model_class_names(model_ids), tuple(dataset.class_names or ())
    renamed = dataset.class_source == "cub"  # CUB's classes.txt: its own ids ("001.Black_footed_Albatross")
    if renamed and model_names and len(model_names) == len(data_names) and all(map(_same_name, model_names, data_names)):
        return
    first = next((i for i, (m, d) in enumerate(zip(model_ids, data_ids)) if m != d), min(len(model_ids), len(data_ids)))
    at = (
        f"class {first} is {data_ids[first]} in the data but {model_ids[first]} for the model"
        if first < min(len(model_ids), len(data_ids))
        else f"the first {first} agree, then one list ends"
    )
    raise RunError(
        f"{name} predicts {len(model_ids)} classes ({model_ids[0]} ...) but the data under {dataset.root} has "
        f"{len(data_ids)} ({data_ids[0] if data_ids else 'none'} ...): {at}; evaluate it on data with its own "
        "classes, or use a model trained on these classes (`bench train`)"
    )


@dataclass(frozen=True)
class SuiteRun:
    """One run of a suite request, as :func:`suite_runs` hands it back (the CLI prints it).

    ``summary`` is None on ranks > 0 under ``torchrun`` (rank 0 writes and reports); ``already``:
    the run was complete before, nothing was recomputed; ``choice``: the box threshold chosen with
    ``--select-on``, given by ``--box-threshold`` or a crop suite's per-backbone default; ``wsol``: the sweep results (``sweep.json``) of a wsol_* suite.
    """

    name: str  # the model as the user named it
    protocol: Protocol
    run: RunDir
    summary: dict[str, Any] | None
    already: bool
    choice: dict[str, Any] | None = None
    wsol: dict[str, Any] | None = None


def _build_models(request: SuiteRequest, protocol: Protocol, models: Sequence[str | nn.Module]) -> list[tuple[BenchModel, WeightsInfo]]:
    """Resolve every model of the request (their extras are checked before, by :func:`suite_runs`)."""
    built: list[tuple[BenchModel, WeightsInfo]] = []
    for i, ref in enumerate(models):
        options = replace(
            request.model_options,
            weights=request.weights[i] if i < len(request.weights) else None,
            layer=None if is_registry_model(ref) else request.layer,
            method=protocol.cam_method,
        )
        built.append(resolve_model(ref, options))
    return built


def suite_runs(request: SuiteRequest, config: RunConfig) -> Iterator[SuiteRun]:
    """Run the suite (and its companions) for every model, yielding each run as it finishes.

    Everything that can be checked is checked before any file is written: the suite files, the
    model names, their optional extras and weights, the class ids against the data's.

    Models are resolved by :func:`bench.models.resolve.resolve_model` (registry names, Caffe strings,
    ``module:factory``, ``file.py:factory``, ``timm/``, ``torchvision/``, entry points, nn.Modules).
    Registry and Caffe models take ``--layer`` as the protocol's Grad-CAM layer; other models take it
    as their feature layer, recorded in the manifest's model section, so their protocol keeps the
    suite's own ``[cam] layer``. Nothing is printed: the caller reports what it gets
    (:func:`run_named_suite` for the Python API, ``bench run`` in :mod:`bench.cli`).
    """
    check_library_method(request.method)
    base = load_protocol(request.suite)
    protocol = base.with_method(request.method, request.layer)
    check_library_method(protocol.cam_method)  # a suite file may name one too
    models = list(request.models) or list(protocol.default_models)
    if not models:
        raise RunError(f"suite {protocol.name} names no default models: pass --model NAME")
    if len(request.weights) > len(models):
        raise RunError("more --weights than --model; give one --weights per --model, in order")
    if len(request.labels) > len(models):
        raise RunError("more --label than --model; give one --label per --model, in order")
    bases = [base, *(load_protocol(c) for c in protocol.companions)]
    check_flags(request, bases, models)
    # every optional extra the suites, the method and the models need, before anything is built or written
    require_extras(needed_extras(protocols=bases, methods=[request.method], models=models))
    if "center" in models and protocol.cam_method != "cam":
        raise RunError(f"--model center is model-free: it takes no --method (got {protocol.cam_method}); run it without --method")
    built = _build_models(request, protocol, models)
    data = resolve_data(protocol, request.data)
    try:
        for b in bases:
            blacklist = (data / b.blacklist) if b.blacklist else None
            valset = open_dataset(data, layout=request.gt_layout, images=request.images, split=request.split, blacklist=blacklist, metadata=request.metadata, masks=request.masks)
            for ref, (model, info) in zip(models, built):
                check_classes(ref if isinstance(ref, str) else model.spec.name, model_class_ids(model, info), valset)
            for i, (ref, (model, info)) in enumerate(zip(models, built)):
                p = b.with_method(request.method, request.layer if is_registry_model(ref) else None)
                yield _run_one(request, config, p, b is bases[0], valset, ref, model, info, i, data, blacklist)
    finally:
        shutdown_distributed()


def _run_one(
    request: SuiteRequest, config: RunConfig, p: Protocol, first_suite: bool, valset: Dataset, ref: str | nn.Module,
    model: BenchModel, info: WeightsInfo, i: int, data: Path, blacklist: Path | None,
) -> SuiteRun:
    """One model on one suite: the optional box-threshold choice, the run, its label and wsol sweep."""
    name = ref if isinstance(ref, str) else model.spec.name  # as the user named it, for messages
    run = run_folder(  # caffe:/x/NET.pt -> NET, pkg.mod:factory -> pkg.mod.factory
        request.out, p, model.spec.name, label=request.labels[i] if i < len(request.labels) else None,
        limit=config.limit, layer=request.layer, reshape=request.model_options.reshape,
    )  # fmt: skip
    p, choice = box_threshold(p, request, model.spec.name, first=first_suite)
    if request.select_on and not p.wsol_evaluation:  # the box threshold, chosen on another split
        from bench.run.select_on import choose_box_threshold

        if first_suite or (p.heuristic == "top5" and p.box_rule == "largest_cc"):
            p, choice = choose_box_threshold(p, request, run, model, info, _run_config(p, config), data, blacklist)
        else:
            print(f"--select-on {request.select_on}: {p.name} keeps its own fixed thresholds ({p.heuristic})", file=sys.stderr)
    already = run.is_complete()
    try:
        summary = run_suite(p, valset, model, info, run, _run_config(p, config), command=sys.argv)
    except KeyboardInterrupt:
        n = len(valset.images) if config.limit is None else min(config.limit, len(valset.images))
        total = (n + config.shard_size - 1) // config.shard_size
        raise RunInterrupted(
            f"interrupted after {len(run.done_shards())} of {total} shards of {name} on {p.name} "
            f"({run.path}); rerun the same command to resume"
        ) from None
    if choice is not None and summary is not None:
        from bench.run.select_on import record_choice

        summary = record_choice(run, choice)
    if i < len(request.labels):
        _record_label(run, request.labels[i])
    elif model.spec.head == "center":  # wsolevaluation's name for the row
        _record_label(run, "Center baseline")
    wsol = None
    if summary is not None and p.wsol_evaluation:
        from bench.run.wsol_suite import finish_wsol_run

        wsol = finish_wsol_run(p, request, run, model, info, config, data, blacklist)
    return SuiteRun(name, p, run, summary, already, choice if summary is not None else None, wsol)


def run_named_suite(request: SuiteRequest, config: RunConfig, *, on_run: Callable[[SuiteRun], None] | None = None) -> list[RunDir]:
    """Run the suite (and its companions) for every model (:func:`suite_runs`); returns the run
    folders. Prints nothing: ``on_run`` gets each finished run (the CLI prints it). The suite's paper
    tables are written by the caller (:func:`bench.workflow.run_requested_suite`)."""
    runs = []
    for done in suite_runs(request, config):
        if on_run is not None:
            on_run(done)
        runs.append(done.run)
    return runs


def box_threshold(p: Protocol, request: SuiteRequest, model_name: str, *, first: bool = True) -> tuple[Protocol, dict[str, Any] | None]:
    """The run's box threshold: ``--box-threshold``, else (crop suites) the suite's per-backbone default
    (``[suite] box_thresholds``, :meth:`Protocol.threshold_for`); with what the summary records about it.

    Raises:
        RunError: ``--box-threshold`` with ``--select-on``, or for a suite whose thresholds are fixed.
    """
    if request.box_threshold is not None:
        if request.select_on:
            raise RunError("--box-threshold and --select-on exclude each other: give the threshold, or the split to choose it on")
        if p.heuristic != "top5" or p.box_rule == "cam_release":
            if first:
                raise RunError(f"--box-threshold: {p.name} uses {p.heuristic} / {p.box_rule}, whose thresholds are fixed")
            return p, None
        return p.with_threshold(request.box_threshold), {"box_threshold": float(request.box_threshold), "box_threshold_chosen_on": "--box-threshold"}
    if p.pipeline == "crop":
        tau, why = p.threshold_for(model_name)
        return p.with_threshold(tau), {"box_threshold": tau, "box_threshold_chosen_on": why}
    return p, None


def _record_label(run: RunDir, label: str) -> None:
    """`bench run --label`: the run's name in tables, kept in its manifest (not part of its identity)."""
    if _is_rank0() and run.exists():
        manifest = run.read_manifest()
        if manifest.get("label") != label:
            manifest["label"] = label
            run.write_manifest(manifest)


def _run_config(protocol: Protocol, config: RunConfig) -> RunConfig:
    """wsol suites score the cached GT-class maps after the run: they always keep a CAM cache."""
    return replace(config, save_cams=True) if protocol.wsol_evaluation else config


def _is_rank0() -> bool:
    return dist_env()[0] == 0
