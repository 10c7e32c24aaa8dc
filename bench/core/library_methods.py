"""Maps from the method zoos of two libraries: ``grad-cam:NAME`` (pytorch-grad-cam) and ``torchcam:NAME``.

A method string ``LIB:NAME`` names a library (``grad-cam`` = the PyPI package ``grad-cam``, import
``pytorch_grad_cam``, extra ``gradcam``; ``torchcam`` = ``torchcam``, extra ``torchcam``) and the
library's own class name (``grad-cam:ScoreCAM``, ``torchcam:SSCAM``). :func:`check_method` refuses,
in one line, a method whose library is not installed (naming ``pip install 'wsol-bench[EXTRA]'``) or
a NAME the library does not have (listing the names that exist); the CLI and ``bench run`` call it
before any file is written.

:func:`library_maps` calls the library through its own batch interface:

* pytorch-grad-cam: ``cam(input_tensor=x, targets=[ClassifierOutputTarget(c_b) ...])``, one call per
  class rank (each call is the library's own forward and, for gradient methods, backward);
* torchcam: one forward ``scores = model(x)`` with the extractor's hooks, then
  ``extractor(class_idx=[c_b ...], scores)`` per rank (``retain_graph`` between ranks for the
  gradient extractors).

The model the libraries see is the harness's network with its logits as output; its default target
layer is the native Grad-CAM's (:func:`bench.core.gradmaps.default_layer`): for GAP/GMP nets the
feature map the network returns, exposed as the output of an identity module (``tap``) through which
the logits are recomputed by the network's own pooling and classifier (:class:`_LogitsModel`), so
the libraries hook, differentiate and (AblationCAM) replace it like any layer on the path. ``reshape='vit'`` (user models with token features) is
passed as the library's ``reshape_transform`` (:func:`bench.models.user.tokens_to_grid`) when the
hooked layer's output is ``(B, N, C)`` tokens.

What the library returns is kept as it returns it: pytorch-grad-cam's maps are min-max normalised
per image and resized (OpenCV bilinear) to the input size ``S x S``, float32; torchcam's are
min-max normalised at the layer's grid (ReLU first for its gradient methods). The suite then
resizes them to the image's original size and boxes them by its own rule.

Methods that forward the network once per channel (ScoreCAM, AblationCAM, SSCAM, ISCAM) would
materialise ``B x K`` masked inputs in one library call; they are called one image at a time (the
maps of a batch-independent method do not depend on the batch) and show a progress bar per batch.
Methods that draw random numbers (:data:`RANDOM_METHODS`) are seeded with :data:`SEED` before every
library call (recorded in the manifest, :func:`method_info`); their maps depend on the seed and
therefore on how images are grouped into calls, so they are not batch-independent.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.extras import extra_installed, require_extras

__all__ = [
    "LIBRARIES",
    "METHOD_NAMES",
    "MANY_PASSES",
    "RANDOM_METHODS",
    "SEED",
    "LibraryMethodError",
    "is_library_method",
    "parse_method",
    "check_method",
    "available_methods",
    "method_info",
    "method_cost",
    "library_maps",
]


@dataclass(frozen=True)
class Library:
    """One method zoo: the method prefix, the module imported, the PyPI package and the wsol-bench extra."""

    prefix: str
    module: str
    package: str
    extra: str


#: The method zoos, by method prefix.
LIBRARIES: dict[str, Library] = {
    "grad-cam": Library("grad-cam", "pytorch_grad_cam", "grad-cam", "gradcam"),
    "torchcam": Library("torchcam", "torchcam.methods", "torchcam", "torchcam"),
}

#: The class names the harness runs, per library (classification targets, one target layer, the
#: library's plain call). Left out: pytorch-grad-cam's SegEigenCAM (segmentation), RefineCAM and
#: SESS (wrappers of another method), DeepFeatureFactorization (concepts, no class target);
#: torchcam's LeGrad (ViT attention only) and RefineCAM (needs several layers).
METHOD_NAMES: dict[str, tuple[str, ...]] = {
    "grad-cam": (
        "GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM", "AblationCAM", "ScoreCAM",
        "EigenCAM", "EigenGradCAM", "LayerCAM", "FullGrad", "KPCA_CAM", "ShapleyCAM", "FinerCAM", "FEM", "RandomCAM",
    ),  # fmt: skip
    "torchcam": (
        "CAM", "GradCAM", "GradCAMpp", "SmoothGradCAMpp", "ScoreCAM", "SSCAM", "ISCAM", "XGradCAM", "LayerCAM",
    ),  # fmt: skip
}

#: Methods that forward the network once per channel of the layer (K) or more: called one image at a
#: time, with a progress bar per batch.
MANY_PASSES: frozenset[str] = frozenset(
    {"grad-cam:ScoreCAM", "grad-cam:AblationCAM", "torchcam:ScoreCAM", "torchcam:SSCAM", "torchcam:ISCAM"}
)
#: Methods whose maps depend on random numbers (noise or random weights); seeded with :data:`SEED`.
RANDOM_METHODS: frozenset[str] = frozenset({"grad-cam:RandomCAM", "torchcam:SmoothGradCAMpp", "torchcam:SSCAM"})
#: Seed set (torch and numpy) before every library call of a random method.
SEED: int = 0

#: Network passes per image and class (K = channels of the target layer), for `bench list`.
_COST: dict[str, str] = {
    "GradCAM": "1 fwd + 1 bwd", "HiResCAM": "1 fwd + 1 bwd", "GradCAMElementWise": "1 fwd + 1 bwd",
    "GradCAMPlusPlus": "1 fwd + 1 bwd", "GradCAMpp": "1 fwd + 1 bwd", "XGradCAM": "1 fwd + 1 bwd",
    "LayerCAM": "1 fwd + 1 bwd", "EigenGradCAM": "1 fwd + 1 bwd", "FullGrad": "1 fwd + 1 bwd (all biases)",
    "ShapleyCAM": "1 fwd + 1 bwd + Hessian-vector product", "FinerCAM": "1 fwd + 1 bwd",
    "EigenCAM": "1 fwd (class-independent)", "KPCA_CAM": "1 fwd (class-independent)", "FEM": "1 fwd (class-independent)",
    "RandomCAM": "1 fwd + 1 bwd (random weights)", "CAM": "1 fwd", "SmoothGradCAMpp": "5 fwd + 4 bwd (noisy inputs)",
    "AblationCAM": "K + 2 fwd", "SSCAM": "35 K + 2 fwd (noisy masks)", "ISCAM": "10 K + 2 fwd",
}  # fmt: skip
#: Costs that differ between the libraries (counted by benchmarks/methods_speed.py: the extractor's
#: own forward, torchcam's baseline-score forward, then one per masked input).
_COST_BY_METHOD: dict[str, str] = {"grad-cam:ScoreCAM": "K + 1 fwd", "torchcam:ScoreCAM": "K + 2 fwd"}


class LibraryMethodError(ValueError):
    """A library method that cannot run: its extra is not installed, or the library has no such NAME."""


def is_library_method(method: str) -> bool:
    """Whether ``method`` has the form ``LIB:NAME`` of a known library prefix (syntax only)."""
    prefix, sep, name = method.partition(":")
    return bool(sep) and prefix in LIBRARIES and bool(name)


def parse_method(method: str) -> tuple[Library, str]:
    """``'grad-cam:ScoreCAM'`` -> ``(LIBRARIES['grad-cam'], 'ScoreCAM')``; syntax only (no import)."""
    if not is_library_method(method):
        raise LibraryMethodError(
            f"method {method!r} is not LIB:NAME with LIB one of {sorted(LIBRARIES)} (e.g. grad-cam:ScoreCAM, torchcam:SSCAM)"
        )
    prefix, _, name = method.partition(":")
    return LIBRARIES[prefix], name


def available_methods(prefix: str) -> tuple[str, ...]:
    """The NAMEs of :data:`METHOD_NAMES` that the installed library has (empty when not installed)."""
    library = LIBRARIES[prefix]
    if not extra_installed(library.extra):
        return ()
    module = importlib.import_module(library.module)
    return tuple(n for n in METHOD_NAMES[prefix] if hasattr(module, n))


def check_method(method: str) -> None:
    """Refuse, in one line, a library method that cannot run here (call before writing any file).

    Raises:
        LibraryMethodError: bad syntax, or a NAME the library does not have (lists the names that exist).
        bench.extras.MissingExtra: the library's extra is not installed (names the pip command).
    """
    library, name = parse_method(method)
    require_extras({library.extra: f"--method {method}"})  # the one table of extras, the one message
    names = available_methods(library.prefix)
    if name not in names:
        raise LibraryMethodError(
            f"--method {method}: {library.package} has no method {name!r} the harness runs; "
            f"choose one of {', '.join(f'{library.prefix}:{n}' for n in names)}"
        )


def method_cost(method: str) -> str:
    """Network passes per image and class of a library method (K = the target layer's channels)."""
    return _COST_BY_METHOD.get(method) or _COST.get(parse_method(method)[1], "?")


def method_info(method: str) -> dict[str, Any]:
    """The manifest's ``method`` section of a library method: library, version, class, seed."""
    from importlib.metadata import version

    library, name = parse_method(method)
    return {
        "method": method,
        "library": library.package,
        "module": library.module.split(".")[0],
        "version": version(library.package),
        "class": name,
        "seed": SEED if method in RANDOM_METHODS else None,
        "batch_independent": method not in RANDOM_METHODS,
        "passes_per_image_and_class": method_cost(method),
    }


# ------------------------------------------------------------------------------------ the maps


class _LogitsModel(nn.Module):
    """The harness's network as the libraries expect it: ``x -> logits``.

    With ``tapped`` (the default layer of a GAP/GMP net: the feature map the network returns) the
    logits are recomputed from that feature map through ``tap``, an identity module:
    ``logits = pool(tap(F)) @ W.T + b`` with the network's own pooling (mean for GAP, max for GMP)
    and classifier ``(W, b)`` (the CAM identity the harness checks for every model that returns
    features). ``tap`` is thus a layer *on the path* to the logits, as the libraries require: a
    forward hook on it sees ``F``, a gradient hook receives ``d logits / d F`` (the native Grad-CAM's
    gradients), and a method that replaces the layer's output (AblationCAM) changes the logits.
    """

    def __init__(self, model: nn.Module, tapped: bool = False) -> None:
        super().__init__()
        self.model = model
        self.tap = nn.Identity()
        self.tapped = tapped

    def forward(self, x: Tensor) -> Tensor:
        logits, features = self.model(x)
        if not self.tapped:
            return logits
        assert features is not None  # GAP/GMP nets return their feature map
        f = self.tap(features)
        pooled = f.amax(dim=(2, 3)) if self.model.spec.head == "gmp" else f.mean(dim=(2, 3))
        weight, bias = self.model.classifier()
        return nn.functional.linear(pooled, weight, bias)


def _target_module(model: nn.Module, layer: str | None) -> tuple[_LogitsModel, nn.Module]:
    """The wrapped model and the library's target layer: ``layer`` (or the native Grad-CAM default),
    else the ``tap`` of the feature map the network returns."""
    from bench.core.gradmaps import default_layer, resolve_layer

    name = layer if layer is not None else default_layer(model)  # type: ignore[arg-type]
    if name is None:
        wrapped = _LogitsModel(model, tapped=True).eval()
        return wrapped, wrapped.tap
    wrapped = _LogitsModel(model).eval()
    return wrapped, resolve_layer(model, name)[1]  # type: ignore[arg-type]


def _reshape_transform(model: nn.Module, target: nn.Module, wrapped: _LogitsModel) -> Any:
    """``tokens_to_grid`` for ``--reshape vit`` models when the hooked layer is not the (folded) tap."""
    if getattr(model, "reshape", None) != "vit" or target is wrapped.tap:
        return None
    from bench.models.user import tokens_to_grid

    prefix = getattr(getattr(model, "net", None), "num_prefix_tokens", None)
    return lambda t: tokens_to_grid(t, prefix)


@contextlib.contextmanager
def _seeded(active: bool) -> Iterator[None]:
    """torch and numpy seeded with :data:`SEED` inside, their states restored after (when ``active``)."""
    if not active:
        yield
        return
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        np.random.seed(SEED)
        try:
            yield
        finally:
            np.random.set_state(state)


def _gradcam_calls(method: str, cls: type, wrapped: _LogitsModel, target: nn.Module, reshape: Any,
                   x: Tensor, classes: Tensor) -> Tensor:  # fmt: skip
    """pytorch-grad-cam: one ``cam(input_tensor, targets)`` call per rank -> ``(B, k, S, S)``."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    k = classes.shape[1]
    out = []
    with cls(model=wrapped, target_layers=[target], reshape_transform=reshape) as cam:
        for j in range(k):
            targets = [ClassifierOutputTarget(int(c)) for c in classes[:, j].tolist()]
            with _seeded(method in RANDOM_METHODS):
                maps = cam(input_tensor=x, targets=targets)
            out.append(torch.from_numpy(np.ascontiguousarray(maps)))
    wrapped.zero_grad(set_to_none=True)  # the library's backward() fills .grad; leave the model as found
    return torch.stack(out, dim=1)


def _torchcam_calls(method: str, cls: type, wrapped: _LogitsModel, target: nn.Module, reshape: Any,
                    x: Tensor, classes: Tensor) -> Tensor:  # fmt: skip
    """torchcam: one forward with the extractor's hooks, then ``extractor(class_idx, scores)`` per rank."""
    from torchcam.methods.gradient import _GradCAM

    k = classes.shape[1]
    kwargs: dict[str, Any] = {"target_layer": target, "input_shape": tuple(x.shape[1:])}
    if reshape is not None:
        kwargs["reshape_transform"] = reshape
    if cls.__name__ == "CAM":
        kwargs["fc_layer"] = _last_linear(wrapped)
    out = []
    gradient = issubclass(cls, _GradCAM) and cls.__name__ != "SmoothGradCAMpp"
    with _seeded(method in RANDOM_METHODS), cls(wrapped, **kwargs) as extractor:
        scores = wrapped(x)
        for j in range(k):
            extra = {"retain_graph": j < k - 1} if gradient else {}
            maps = extractor(classes[:, j].tolist(), scores, **extra)
            out.append(maps[0].detach())
    return torch.stack(out, dim=1)


def _last_linear(wrapped: _LogitsModel) -> nn.Module:
    linears = [m for m in wrapped.model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise LibraryMethodError("torchcam:CAM needs a network that ends in a linear classifier")
    return linears[-1]


def library_maps(
    model: nn.Module,
    images: Tensor,
    classes: Tensor,
    method: str,
    layer: str | None = None,
    progress: bool | None = None,
) -> Tensor:
    """Maps of ``classes (B, k)`` for ``images (B, 3, S, S)`` by the library method ``method``.

    Args:
        model: a :class:`~bench.models.BenchModel` (``x -> (logits, features | None)``) in eval mode,
            on ``images.device``.
        images: the normalised input batch (may be an inference tensor; it is copied).
        classes: ``(B, k)`` integer class indices (ranked classes, then the GT class).
        method: ``grad-cam:NAME`` or ``torchcam:NAME`` (:func:`check_method` passed).
        layer: target layer, a name of ``model.named_modules()`` (``'net.'`` optional); None = the
            native Grad-CAM's default layer.
        progress: progress bar over the batch's maps (None: only for :data:`MANY_PASSES` methods on a
            terminal).

    Returns:
        ``(B, k, h, w)`` as the library returns them (pytorch-grad-cam: ``h = w = S``, float32,
        min-max normalised; torchcam: the layer's grid, min-max normalised, the activations' dtype),
        on ``images.device``, detached.
    """
    from tqdm import tqdm

    check_method(method)
    if model.training:
        raise ValueError("localization maps need the model in eval mode (call model.eval())")
    library, name = parse_method(method)
    cls = getattr(importlib.import_module(library.module), name)
    wrapped, target = _target_module(model, layer)
    reshape = _reshape_transform(model, target, wrapped)
    call = _gradcam_calls if library.prefix == "grad-cam" else _torchcam_calls
    many = method in MANY_PASSES
    chunk = 1 if many else images.shape[0]
    b = images.shape[0]
    parts = []
    with torch.inference_mode(False), torch.enable_grad():
        x_all = images.detach().clone()
        bar = tqdm(total=b, desc=f"{method} maps", unit="img", leave=False,
                   disable=(not many) if progress is None else not progress)  # fmt: skip
        try:
            for start in range(0, b, chunk):
                x = x_all[start : start + chunk].clone()
                parts.append(call(method, cls, wrapped, target, reshape, x, classes[start : start + chunk]))
                bar.update(x.shape[0])
        finally:
            bar.close()
    return torch.cat(parts, dim=0).to(images.device)
