"""Model strings -> models: one small table of patterns and resolver functions.

``resolve_model(ref, options)`` accepts, in the order of :data:`RESOLVERS`:

==============================  =====================================================================
``timm/NAME``                   ``timm.create_model(NAME)`` (optional extra ``wsol-bench[timm]``); timm's
                                own weights when online, random init with ``pretrained=False``,
                                ``--weights FILE`` offline
``torchvision/NAME``            ``torchvision.models.get_model(NAME)``; its DEFAULT weights from the torch
                                hub cache, else a download (as for registry models); ``--weights FILE``
``path/to/file.py:factory``     import the file, call ``factory()``
``package.module:factory``      import the module (the current folder is importable), call ``factory()``
``caffe:NET.pt``, ``X.prototxt``  the authors' Caffe models, through :func:`bench.models.build_model`
an entry-point name             a factory registered by a package under the entry-point group
                                ``wsol_bench.models`` (``bench list`` shows them)
a registry name                 :func:`bench.models.build_model`
an ``nn.Module``                (Python API) used as it is
==============================  =====================================================================

Everything but registry names goes through :func:`bench.models.user.wrap_module` (CAM pair traced,
identity checked, preprocessing resolved). A factory returns an ``nn.Module``; ``--weights FILE``
then loads a state dict into it (``weights_only=True``, strict; ``'state_dict'``/``'model'``
wrappers and a DDP ``module.`` prefix accepted).

Adding a kind of model string is one entry: ``register_resolver(matches, resolver)`` puts it
before the built-in ones (the Caffe strings are such an entry, pointing at ``build_model``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.models.registry import MODELS, BenchModel, UnknownModelError, build_model
from bench.models.sources import WeightsInfo, WeightsMismatch, apply_state_dict, fetch_torchvision_file, load_state_dict_file
from bench.models.user import ModelAdapterError, wrap_module

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelOptions",
    "Resolver",
    "RESOLVERS",
    "register_resolver",
    "resolve_model",
    "entry_point_models",
    "is_registry_model",
    "model_from_manifest",
    "state_dict_digest",
]

#: Entry-point group under which packages register model factories.
ENTRY_POINT_GROUP = "wsol_bench.models"


@dataclass(frozen=True)
class ModelOptions:
    """How to build a model besides its name (each maps to a `bench run` flag).

    Attributes:
        weights: state-dict file (``--weights``).
        pretrained: False = random init, no weights read (``--no-pretrained``; timm/torchvision/registry).
        num_classes: classifier outputs of a ``timm/`` or ``torchvision/`` model (``--num-classes``;
            default: the library's, 1000), e.g. to load a state dict trained on other classes.
        layer, classifier: module names of the feature map and the linear layer (``--layer``,
            ``--classifier``; user models).
        reshape: ``'vit'`` (``--reshape``).
        input_size, mean, std: preprocessing (``--input-size``, ``--mean``, ``--std``).
        method: the map method; ``'cam'`` requires a GAP/GMP pair.
    """

    weights: str | os.PathLike[str] | None = None
    pretrained: bool = True
    num_classes: int | None = None  # --num-classes: timm/ and torchvision/ models built with N outputs
    layer: str | None = None
    classifier: str | None = None
    reshape: str | None = None
    input_size: int | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    method: str = "cam"


Resolver = Callable[[Any, ModelOptions], tuple[BenchModel, WeightsInfo]]


def _load_user_weights(net: nn.Module, ref: str, options: ModelOptions) -> WeightsInfo | None:
    if options.weights is None:
        return None
    path = Path(options.weights).expanduser().resolve()
    sd, digest = load_state_dict_file(path)
    try:
        apply_state_dict(net, sd, origin=str(path), model_name=ref)
    except WeightsMismatch as exc:
        hint = _num_classes_hint(net, sd, ref)
        raise WeightsMismatch(f"{exc}; {hint}" if hint else str(exc)) from None
    return WeightsInfo("file", str(path), digest)


def _num_classes_hint(net: nn.Module, sd: Mapping[str, Any], ref: str) -> str | None:
    """When the file's last linear layer has another number of outputs than the model's: the flag
    that builds the model with the file's count (timm/, torchvision/), else None."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears or not isinstance(ref, str) or not ref.startswith(("timm/", "torchvision/")):
        return None
    name, last = linears[-1]
    weight = sd.get(f"{name}.weight")
    if weight is None or getattr(weight, "ndim", 0) != 2 or int(weight.shape[0]) == last.out_features:
        return None
    return f"the file's classifier has {int(weight.shape[0])} outputs, the model's {last.out_features}: add --num-classes {int(weight.shape[0])}"


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (name lookup
    included: it runs on a daemon thread, so a resolver that hangs cannot hold the command)."""
    import socket
    import threading

    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """huggingface_hub in offline mode (cache only, no request and no retry) for the block."""
    try:
        from huggingface_hub import constants
    except ImportError:  # timm without the hub: nothing to switch
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices`` (difflib), else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def state_dict_digest(net: nn.Module) -> str:
    """SHA-256 of a module's weights (names, dtypes, shapes and bytes of its state dict, in key order).

    Recorded as ``weights_sha256`` for models whose weights come from no file (a factory's own init or
    download, an ``nn.Module`` object), so a run folder is never resumed with other weights.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _unfiled(source: str, net: nn.Module) -> WeightsInfo:
    return WeightsInfo(source, None, state_dict_digest(net))


def _wrap(net: Any, ref: str, options: ModelOptions, note: str, name: str | None = None) -> BenchModel:
    return wrap_module(
        net, reference=ref, name=name, layer=options.layer, classifier=options.classifier, reshape=options.reshape,
        input_size=options.input_size, mean=options.mean, std=options.std, require_cam=options.method == "cam",
        weights_note=note,
    )  # fmt: skip


def _user_frame(exc: BaseException) -> str:
    """``  File "F", line N, in FUNC: CODE`` of the innermost frame of ``exc``'s traceback that is the
    user's own code (outside this package, the standard library and installed packages), else of
    the innermost frame; empty without a traceback."""
    import sysconfig
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    skip = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                                                  sysconfig.get_paths()["platlib"], str(Path(__file__).resolve().parents[1])})  # fmt: skip
    own = [f for f in frames if not str(Path(f.filename).resolve()).startswith(skip)]
    f = (own or frames)[-1]
    return f'  File "{f.filename}", line {f.lineno}, in {f.name}: {(f.line or "").strip()}'


def _raised(what: str, exc: BaseException) -> ModelAdapterError:
    """One line saying ``what`` raised which exception, then the user's own frame (:func:`_user_frame`)."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    frame = _user_frame(exc)
    return ModelAdapterError(f"{what} raised {reason}" + (f"\n{frame}" if frame else ""))


def _call_factory(factory: Any, ref: str) -> nn.Module:
    if not callable(factory):
        raise ModelAdapterError(f"{ref}: {factory!r} is not callable (expected a factory returning an nn.Module)")
    try:
        net = factory()
    except Exception as exc:  # the user's code: its error in one line plus where in their code
        raise _raised(f"--model {ref}: the factory", exc) from None
    if not isinstance(net, nn.Module):
        raise ModelAdapterError(f"{ref}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelAdapterError(f"--model {path}: no such file")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"_bench_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ModelAdapterError(f"--model {path}: cannot import this file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise _raised(f"--model {path}: importing the file", exc) from None
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _factory(ref: str, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise ModelAdapterError(f"--model {ref!r}: expected package.module:factory or path/to/file.py:factory")
    if target.endswith(".py"):
        module = _import_file(Path(target).expanduser().resolve())
        name = f"{Path(target).stem}.{attr}"
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:  # the `bench` script, unlike `python -m`, does not see the
            sys.path.append(cwd)  # current folder; append it (installed packages keep precedence), as uvicorn does
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelAdapterError(f"--model {ref!r}: cannot import module {target!r} ({exc}); is it on PYTHONPATH?") from exc
        name = f"{target}.{attr}"
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ModelAdapterError(f"--model {ref!r}: {target} has no attribute {attr!r}")
        factory = getattr(factory, part)
    net = _call_factory(factory, ref)
    info = _load_user_weights(net, ref, options) or _unfiled("factory", net)
    return _wrap(net, ref, options, f"user factory {ref}", name=name), info


def _timm(ref: str, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    try:
        import timm
    except ImportError:
        raise ModelAdapterError(f"--model {ref}: timm is not installed; pip install 'wsol-bench[timm]'") from None
    name = ref.split("/", 1)[1]
    if not timm.is_model(name):
        raise ModelAdapterError(f"--model {ref}: timm has no model {name!r}{_did_you_mean(name, timm.list_models())}; see timm.list_models()")
    use_own = options.pretrained and options.weights is None
    kwargs = {} if options.num_classes is None else {"num_classes": options.num_classes}
    try:
        if not use_own:
            net = timm.create_model(name, pretrained=False, **kwargs)
        else:
            try:
                with _hf_offline():  # weights already in the Hugging Face cache: no request at all
                    net = timm.create_model(name, pretrained=True, **kwargs)
            except Exception:
                if not _hub_reachable():  # offline: one line now, not a minute of retries
                    raise ModelAdapterError(
                        f"--model {ref}: timm's pretrained weights of {name} are not in the Hugging Face cache and "
                        "huggingface.co cannot be reached; pass --weights FILE, or --no-pretrained for a random init"
                    ) from None
                net = timm.create_model(name, pretrained=True, **kwargs)
    except ModelAdapterError:
        raise
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ModelAdapterError(f"--model {ref}: timm cannot create {name!r}: {reason}") from exc
    info = _load_user_weights(net, ref, options)
    if info is None:
        info = _unfiled("timm" if use_own else "random-init", net)
    return _with_build_flags(_wrap(net, ref, options, f"timm {name}", name=f"timm-{name}"), options), info


def _torchvision(ref: str, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    import torchvision.models as tvm

    name = ref.split("/", 1)[1]
    known = tvm.list_models(module=tvm)
    if name not in known:
        raise ModelAdapterError(f"--model {ref}: torchvision has no classifier {name!r}{_did_you_mean(name, known)}; see torchvision.models.list_models()")
    try:
        net = tvm.get_model(name, weights=None, **({} if options.num_classes is None else {"num_classes": options.num_classes}))
    except Exception as exc:
        raise ModelAdapterError(f"--model {ref}: torchvision cannot build {name!r} ({exc})") from exc
    if options.num_classes not in (None, 1000) and options.pretrained and options.weights is None:
        raise ModelAdapterError(
            f"--model {ref} --num-classes {options.num_classes}: torchvision's pretrained weights have 1000 classes; "
            "pass --weights FILE (trained on your classes) or --no-pretrained for a random init"
        )
    info = _load_user_weights(net, ref, options)
    weights_enum = None
    try:
        weights_enum = tvm.get_model_weights(name).DEFAULT
    except Exception:  # a model without published weights
        weights_enum = None
    if info is None and options.pretrained:
        if weights_enum is None:
            raise ModelAdapterError(f"--model {ref}: torchvision publishes no weights for {name!r}; pass --weights FILE")
        path, source = fetch_torchvision_file(weights_enum.url, model_name=ref)
        sd, digest = load_state_dict_file(path)
        apply_state_dict(net, sd, origin=str(path), model_name=ref)
        info = WeightsInfo(source, str(path), digest)
    elif info is None:
        info = _unfiled("random-init", net)
    if weights_enum is not None and not hasattr(net, "pretrained_cfg"):
        preset = weights_enum.transforms()
        crop = getattr(preset, "crop_size", None)
        size = int(crop[0]) if crop else None
        interp = getattr(preset, "interpolation", None)
        net.pretrained_cfg = {  # torchvision's preset, in timm's keys
            "input_size": (3, size, size) if size else None,
            "mean": tuple(getattr(preset, "mean", ())) or None,
            "std": tuple(getattr(preset, "std", ())) or None,
            "interpolation": getattr(interp, "value", None),
        }
    return _with_build_flags(_wrap(net, ref, options, f"torchvision {name}", name=f"torchvision-{name}"), options), info


def _with_build_flags(model: BenchModel, options: ModelOptions) -> BenchModel:
    """Record ``--num-classes`` and ``--no-pretrained`` in the model's manifest section (only when given,
    so the identity of runs made without them is unchanged)."""
    flags: dict[str, Any] = {}
    if options.num_classes is not None:
        flags["num_classes"] = options.num_classes
    if not options.pretrained:
        flags["pretrained"] = False
    if hasattr(model, "build_flags"):
        model.build_flags = flags
    return model


def entry_point_models() -> dict[str, Any]:
    """Entry points of the group :data:`ENTRY_POINT_GROUP`: name -> EntryPoint (not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _entry_point(ref: str, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    ep = entry_point_models()[ref]
    net = _call_factory(ep.load(), f"{ref} ({ep.value})")
    info = _load_user_weights(net, ref, options) or _unfiled("factory", net)
    return _wrap(net, ref, options, f"entry point {ep.value}", name=ref), info


def _is_caffe(ref: Any) -> bool:
    return isinstance(ref, str) and (ref.startswith("caffe:") or ref.lower().endswith(".prototxt"))


def is_registry_model(ref: Any) -> bool:
    """Whether ``ref`` is built by :func:`bench.models.build_model` (registry names and the Caffe
    strings ``caffe:NET.pt`` / ``DEPLOY.prototxt``): those keep ``--layer`` as the Grad-CAM layer."""
    return isinstance(ref, str) and (ref in MODELS or _is_caffe(ref))


def _registry(ref: str, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    return build_model(ref, options.weights, pretrained=options.pretrained or options.weights is not None)


def _module_object(ref: nn.Module, options: ModelOptions) -> tuple[BenchModel, WeightsInfo]:
    if isinstance(ref, BenchModel):
        return ref, _unfiled("module", ref.weights_module())
    info = _load_user_weights(ref, type(ref).__name__, options) or _unfiled("module", ref)
    return _wrap(ref, f"<{type(ref).__module__}.{type(ref).__qualname__}>", options, "nn.Module", name=type(ref).__name__), info


def _center() -> tuple[BenchModel, WeightsInfo]:
    from bench.models.center import center_model

    return center_model()


def _is_str(ref: Any) -> bool:
    return isinstance(ref, str)


#: (matches, resolver) in the order tried; the first match builds the model.
RESOLVERS: list[tuple[Callable[[Any], bool], Resolver]] = [
    (lambda r: isinstance(r, nn.Module), _module_object),
    (lambda r: r == "center", lambda _r, _o: _center()),
    (lambda r: _is_str(r) and r in MODELS, _registry),
    (_is_caffe, _registry),  # build_model reads caffe:NET.pt / DEPLOY.prototxt (bench.models.caffe)
    (lambda r: _is_str(r) and r.startswith("timm/"), _timm),
    (lambda r: _is_str(r) and r.startswith("torchvision/"), _torchvision),
    (lambda r: _is_str(r) and ":" in r, _factory),
    (lambda r: _is_str(r) and r in entry_point_models(), _entry_point),
]


def register_resolver(matches: Callable[[Any], bool], resolver: Resolver, *, first: bool = True) -> None:
    """Add a kind of model string: ``matches(ref)`` selects it, ``resolver(ref, options)`` builds it.

    ``first=True`` puts it before the built-in entries (so ``caffe:X`` is not read as ``module:factory``).
    """
    entry = (matches, resolver)
    if first:
        RESOLVERS.insert(0, entry)
    else:
        RESOLVERS.append(entry)


def resolve_model(ref: str | nn.Module, options: ModelOptions = ModelOptions()) -> tuple[BenchModel, WeightsInfo]:
    """Build the model ``ref`` names (see the module docstring), in eval mode.

    Raises:
        UnknownModelError: nothing matches (lists registry names and the accepted forms).
        ModelAdapterError: a user model that cannot be used as asked.
        WeightsError (and subclasses): weights problems, as for registry models.
    """
    for matches, resolver in RESOLVERS:
        if matches(ref):
            model, info = resolver(ref, options)
            return model.eval(), info
    hint = _did_you_mean(ref, [*MODELS, *entry_point_models()]) if isinstance(ref, str) else ""
    raise UnknownModelError(
        f"unknown model {ref!r}{hint}; give a registry name ({', '.join(MODELS)}), timm/NAME, torchvision/NAME, "
        f"package.module:factory, path/to/file.py:factory, or a name registered under the entry-point group "
        f"{ENTRY_POINT_GROUP} ({', '.join(entry_point_models()) or 'none installed'})"
    )


def model_from_manifest(section: Mapping[str, Any], weights: str | os.PathLike[str] | None = None) -> tuple[BenchModel, WeightsInfo]:
    """Rebuild a run's model from its manifest's ``model`` section (for replay).

    Registry and Caffe models by name; user models from the recorded ``reference`` with the recorded
    layer, classifier, reshape and preprocessing. ``weights``: the (verified) weights file to load,
    default the recorded one when the run loaded a file. The caller compares the returned
    ``WeightsInfo.sha256`` with the manifest's.

    Raises:
        ModelAdapterError: a model built from an ``nn.Module`` object in Python (nothing names it).
        UnknownModelError, WeightsError: as :func:`resolve_model`.
    """
    reference = section.get("reference") or section["name"]
    if section.get("head") == "center":  # the model-free baseline, at its recorded sigma
        from bench.models.center import CenterModel

        return CenterModel(section.get("center_sigma", 0.25), section.get("input_size") or 224), WeightsInfo("none", None, None)
    if isinstance(reference, str) and reference.startswith("<") and reference.endswith(">"):
        raise ModelAdapterError(
            f"model {section['name']} was an nn.Module passed from Python ({reference}); it cannot be rebuilt "
            "from the manifest: evaluate it with save_cams=True to keep its maps"
        )
    if weights is None and section.get("weights_source") == "file":
        weights = section.get("weights_path")
    pre = section.get("preprocessing") or {}
    sources = pre.get("sources") or {}

    def given(key: str) -> Any:  # only the values that came from flags need passing again
        return pre.get(key) if sources.get(key) == "flag" else None

    options = ModelOptions(
        weights=weights,
        pretrained=section.get("weights_source") != "random-init" and section.get("pretrained", True),
        num_classes=section.get("num_classes"),
        layer=section.get("layer") if not is_registry_model(reference) else None,
        classifier=section.get("classifier") if section.get("detected") == "layer" else None,
        reshape=section.get("reshape"),
        input_size=given("input_size"),
        mean=given("mean"),
        std=given("std"),
        method="cam" if section.get("head") in ("gap", "gmp") else "gradcam",
    )
    return resolve_model(reference, options)
