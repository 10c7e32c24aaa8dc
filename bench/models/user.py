"""Any ``nn.Module`` classifier in the harness's uniform view (:class:`~bench.models.BenchModel`).

:func:`wrap_module` turns a user's network (a factory's result, a timm or torchvision model) into a
:class:`UserModel`: ``forward(x) -> (logits (B, C), features (B, K, h, w) | None)``,
``classifier() -> (W (C, K), b (C,))`` and a :class:`~bench.models.ModelSpec`, exactly what the
engine uses for registry models.

**Finding the CAM pair** (no hints needed for a GAP/GMP classifier). One probe forward on random
input of the model's input size is traced at the level of torch functions (a
``TorchFunctionMode``, so plain ``forward`` code with ``x.mean((2, 3))`` or ``torch.amax`` is seen as
well as ``nn.AdaptiveAvgPool2d(1)`` / ``nn.AdaptiveMaxPool2d(1)`` / a ``MaxPool2d`` covering the whole
map, and Python control flow is no obstacle, unlike ``torch.fx``). The classifier is the last
linear call (``F.linear``) whose output is the model's output; the feature map is the input of the
last *global* pooling call (4-D ``(B, K, h, w)`` in, ``(B, K)`` or ``(B, K, 1, 1)`` out) whose
output is exactly that linear call's input (flatten, eval-mode dropout and views in between are
fine; anything that changes the values, e.g. a norm layer, breaks the pair). The pooling function
gives the head: average -> ``'gap'``, max -> ``'gmp'``. This is torch-cam's rule for its target
layer, made exact.

``layer=NAME`` takes the feature map from that module's output instead (a forward hook), and
``classifier=NAME`` the linear layer; with ``layer`` the head is whichever identity holds.

**The CAM identity** is checked on the probe and again on the first real batch: GAP
``mean_xy(F) @ W.T + b == logits``, GMP ``amax_xy(F) @ W.T + b == logits``, within
``2 eps ((hw + K) |W| @ pool|F| + |b|)`` (``eps`` of the logits' dtype; the bound of float
summation over the hw pooled values and the K products; the left side is computed in float64). Failing it, or finding no pair, is a
:class:`ModelAdapterError` naming ``--layer`` / ``--classifier``; for gradient methods a model
without a pair is accepted with head ``'fc'`` (no CAM).

**Token features** (ViT/DeiT, as in TS-CAM): ``reshape='vit'`` folds ``(B, N, C)`` tokens into
``(B, C, g, g)``: the first ``N - g^2`` tokens (class / distillation tokens; ``num_prefix_tokens``
of the model when it has one) are dropped and the rest, in raster order, fill the ``g x g`` patch
grid. With ``reshape='vit'`` a mean/max over the token axis of ``(B, N, C)`` also counts as global
pooling.

**Preprocessing** (:func:`resolve_preprocessing`): each of input size, mean, std comes from the
explicit argument (``--input-size/--mean/--std``), else the model's ``pretrained_cfg`` dict (timm's
convention: ``input_size (3, H, W)``, ``mean``, ``std``, ``interpolation``), else the ImageNet
defaults (224, ImageNet mean/std); the source of each is recorded in the run manifest. The resize
interpolation itself is the suite's (part of the protocol, equal for every model); the model's
preferred one is recorded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from bench.models.registry import BenchModel, ModelSpec
from bench.runtime import BenchError
from bench.models.surgery import IMAGENET_MEAN, IMAGENET_STD, CamNotApplicable

__all__ = [
    "ModelAdapterError",
    "Preprocessing",
    "UserModel",
    "RESHAPES",
    "resolve_preprocessing",
    "tokens_to_grid",
    "fold_tokens",
    "wrap_module",
    "model_output_logits",
]

#: Token-to-grid reshapes accepted by ``reshape=``.
RESHAPES: tuple[str, ...] = ("vit",)
#: Default square input side when neither flag nor ``pretrained_cfg`` gives one.
DEFAULT_INPUT_SIZE = 224

_AVG_POOLS = frozenset({"mean", "adaptive_avg_pool2d", "avg_pool2d"})
_MAX_POOLS = frozenset({"amax", "adaptive_max_pool2d", "max_pool2d", "adaptive_max_pool2d_with_indices", "max_pool2d_with_indices"})
_HINT = "pass --layer NAME (the module whose output is the feature map) and --classifier NAME (the last linear layer)"


class ModelAdapterError(BenchError, ValueError):
    """A user model cannot be used as asked (no CAM pair, identity fails, bad layer name...)."""


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """Input size (square side, pixels), mean/std of RGB in [0, 1], and where each came from."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str | None = None  # the model's preferred resize (recorded only)
    sources: Mapping[str, str] = field(default_factory=dict)  # 'flag' | 'pretrained_cfg' | 'default'

    def manifest(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "model_interpolation": self.interpolation,
            "sources": dict(self.sources),
        }


def _triple(name: str, value: Sequence[float]) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ModelAdapterError(f"{name} must have 3 values (R, G, B), got {list(value)}")
    if name == "std" and any(v <= 0 for v in vals):
        raise ModelAdapterError(f"std must be positive, got {list(vals)}")
    return vals  # type: ignore[return-value]


def resolve_preprocessing(
    net: nn.Module,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Preprocessing:
    """Per field: the explicit value, else ``net.pretrained_cfg`` (timm keys), else the default."""
    cfg = getattr(net, "pretrained_cfg", None)
    cfg = cfg if isinstance(cfg, Mapping) else {}
    sources: dict[str, str] = {}
    if input_size is not None:
        size, sources["input_size"] = int(input_size), "flag"
    elif cfg.get("input_size") is not None:
        shape = tuple(int(v) for v in cfg["input_size"])
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ModelAdapterError(
                f"the model's pretrained_cfg input_size {shape} is not square (3, S, S); pass --input-size S"
            )
        size, sources["input_size"] = shape[1], "pretrained_cfg"
    else:
        size, sources["input_size"] = DEFAULT_INPUT_SIZE, "default"
    if size < 1:
        raise ModelAdapterError(f"input size must be >= 1, got {size}")
    values = {}
    for key, explicit, default in (("mean", mean, IMAGENET_MEAN), ("std", std, IMAGENET_STD)):
        if explicit is not None:
            values[key], sources[key] = _triple(key, explicit), "flag"
        elif cfg.get(key) is not None:
            values[key], sources[key] = _triple(key, cfg[key]), "pretrained_cfg"
        else:
            values[key], sources[key] = default, "default"
    interp = cfg.get("interpolation")
    return Preprocessing(size, values["mean"], values["std"], str(interp) if interp else None, sources)


# --------------------------------------------------------------------------- tracing


def model_output_logits(out: Any) -> Tensor:
    """The logits of a model's output: a tensor, the first of a tuple/list, ``out['logits']`` or ``out.logits``."""
    if isinstance(out, Tensor):
        logits = out
    elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        logits = out[0]
    elif isinstance(out, Mapping) and isinstance(out.get("logits"), Tensor):
        logits = out["logits"]
    elif isinstance(getattr(out, "logits", None), Tensor):
        logits = out.logits
    else:
        raise ModelAdapterError(f"the model returned {type(out).__name__}, not logits (a (B, C) tensor)")
    if logits.ndim != 2:
        raise ModelAdapterError(f"the model's logits must be (B, C), got shape {tuple(logits.shape)}")
    return logits


@dataclass
class _Pool:
    index: int  # position among the global pooling calls of one forward
    kind: str  # 'gap' | 'gmp'
    inp: Tensor
    out: Tensor


def _pooled_shape(x: Tensor, out: Tensor, tokens: bool) -> bool:
    """``x`` (B, K, h, w) -> (B, K) / (B, K, 1, 1); with ``tokens`` also (B, N, C) -> (B, C)."""
    if x.ndim == 4:
        b, k = x.shape[:2]
        return tuple(out.shape) in ((b, k), (b, k, 1, 1))
    if tokens and x.ndim == 3:
        return tuple(out.shape) == (x.shape[0], x.shape[2])
    return False


class _Tracer(TorchFunctionMode):
    """Records global pooling calls and linear calls of one forward (``capture``: only pool #capture)."""

    def __init__(self, tokens: bool, capture: int | None = None, fold: bool = False) -> None:
        super().__init__()
        self.tokens = tokens
        self.capture = capture
        self.fold = fold  # captured token input: fold to the grid and feed the pool the rebuilt tokens
        self.grid: Tensor | None = None
        self.pools: list[_Pool] = []
        self.linears: list[tuple[Tensor, Tensor, Tensor | None, Tensor]] = []
        self.n_pools = 0

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if (
            self.fold and self.capture == self.n_pools and name in _AVG_POOLS | _MAX_POOLS
            and args and isinstance(args[0], Tensor) and args[0].ndim == 3
        ):  # fmt: skip
            self.grid, rebuilt = fold_tokens(args[0])
            args = (rebuilt, *args[1:])
        out = func(*args, **(kwargs or {}))
        if (name in _AVG_POOLS or name in _MAX_POOLS) and args and isinstance(args[0], Tensor):
            res = out[0] if isinstance(out, tuple) else out
            if isinstance(res, Tensor) and _pooled_shape(args[0], res, self.tokens):
                kind = "gap" if name in _AVG_POOLS else "gmp"
                if self.capture is None or self.capture == self.n_pools:
                    self.pools.append(_Pool(self.n_pools, kind, args[0], res))
                self.n_pools += 1
        elif name == "linear" and self.capture is None and len(args) >= 2 and isinstance(out, Tensor):
            bias = args[2] if len(args) > 2 else (kwargs or {}).get("bias")
            self.linears.append((args[0], args[1], bias, out))
        return out


def _pools_tokens(net: nn.Module, x: Tensor, cls_input: Tensor | None) -> bool:
    """Whether the classifier's input is a global pooling of a token sequence ``(B, N, C)`` (a second
    probe forward traced with token pooling on): the case ``--reshape vit`` handles."""
    if cls_input is None:
        return False
    tracer = _Tracer(tokens=True)
    try:
        with torch.no_grad(), tracer:
            net(x)
    except Exception:  # the first probe ran; a failure here only means no hint
        return False
    return any(
        pool.inp.ndim == 3 and pool.out.numel() == cls_input.numel() and torch.equal(pool.out.reshape(cls_input.shape), cls_input)
        for pool in tracer.pools
    )


def fold_tokens(tokens: Tensor, prefix: int | None = None) -> tuple[Tensor, Tensor]:
    """``(grid (B, C, g, g), rebuilt (B, N, C))``: the grid of :func:`tokens_to_grid`, and the same tokens
    rebuilt from it (prefix tokens + unfolded grid; equal values). Feeding ``rebuilt`` downstream puts
    the grid on the path from input to logits, so gradients with respect to it exist."""
    grid = tokens_to_grid(tokens, prefix)
    n_prefix = tokens.shape[1] - grid.shape[2] * grid.shape[3]
    rebuilt = torch.cat([tokens[:, :n_prefix], grid.flatten(2).transpose(1, 2)], dim=1)
    return grid, rebuilt


def tokens_to_grid(tokens: Tensor, prefix: int | None = None) -> Tensor:
    """``(B, N, C)`` tokens -> ``(B, C, g, g)``: drop ``prefix`` leading tokens, fold the rest row-major.

    ``prefix=None``: ``N - g^2`` with ``g = isqrt(N)`` (0, 1 or 2 class/distillation tokens for the
    usual grids). A ``(B, C, h, w)`` input is returned unchanged.
    """
    if tokens.ndim == 4:
        return tokens
    if tokens.ndim != 3:
        raise ModelAdapterError(f"--reshape vit needs (B, N, C) tokens, got shape {tuple(tokens.shape)}")
    b, n, c = tokens.shape
    if prefix is None:
        prefix = n - math.isqrt(n) ** 2
    g = math.isqrt(n - prefix)
    if g * g != n - prefix or g == 0:
        raise ModelAdapterError(f"{n} tokens minus {prefix} prefix tokens do not form a square patch grid")
    return tokens[:, prefix:, :].transpose(1, 2).reshape(b, c, g, g)


# --------------------------------------------------------------------------- the adapter


def _param_name(net: nn.Module, tensor: Tensor | None) -> str | None:
    if tensor is None:
        return None
    for name, p in net.named_parameters():
        if p is tensor:
            return name
    return None


def _identity_error(pooled: Tensor, abs_pooled: Tensor, weight: Tensor, bias: Tensor | None, logits: Tensor, hw: int) -> tuple[float, float]:
    """``(max |pool(F) W^T + b - logits|, max of that deviation minus its bound)``, in float64.

    The bound, element-wise: ``2 eps ((hw + K) |W| @ pool|F| + |b|)``, ``eps`` of the logits' dtype: a
    float sum of n terms errs by at most ``n eps sum|terms|``; the model summed hw values per channel
    (mean) and K products per logit, and ``pool|F|`` bounds the magnitudes either sum sees.
    """
    w = weight.detach().double()
    expect = pooled.detach().double() @ w.T + (bias.detach().double() if bias is not None else 0.0)
    deviation = (expect - logits.detach().double()).abs()
    eps = torch.finfo(logits.dtype).eps if logits.dtype.is_floating_point else torch.finfo(torch.float32).eps
    babs = bias.detach().double().abs() if bias is not None else 0.0
    bound = 2.0 * eps * ((hw + w.shape[1]) * (abs_pooled.detach().double() @ w.abs().T) + babs)
    return float(deviation.max()), float((deviation - bound).max())


def _pool(features: Tensor, head: str) -> Tensor:
    return features.mean(dim=(2, 3)) if head == "gap" else features.amax(dim=(2, 3))


class UserModel(BenchModel):
    """A user's ``nn.Module`` behind the :class:`BenchModel` interface (see the module docstring).

    Attributes:
        spec: the model's :class:`ModelSpec` (``head`` 'gap' | 'gmp' | 'fc').
        net: the user's module (module names for ``--layer`` are its own, ``net.`` optional).
        reference: how the model was named (``pkg.mod:factory``, ``timm/NAME``, ``<nn.Module>``...).
        preprocessing: the :class:`Preprocessing` the run uses.
        layer / classifier: module names of the feature map and the linear layer (None: traced).
        reshape: ``'vit'`` or None.
    """

    def __init__(
        self,
        spec: ModelSpec,
        net: nn.Module,
        *,
        reference: str,
        preprocessing: Preprocessing,
        num_classes: int,
        layer: str | None,
        classifier_params: tuple[str, str | None] | None,
        classifier_name: str | None,
        pool_index: int | None,
        reshape: str | None,
        detected: str,
    ) -> None:
        super().__init__(spec, net)
        self.reference = reference
        self.preprocessing = preprocessing
        self.layer = layer
        self.classifier_params = classifier_params
        self.classifier_name = classifier_name
        self.pool_index = pool_index
        self.reshape = reshape
        self.detected = detected
        self._num_classes = num_classes
        self._checked = spec.head not in ("gap", "gmp")
        #: how a timm/ or torchvision/ model was built when not by default (``num_classes``, ``pretrained``)
        self.build_flags: dict[str, Any] = {}

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def returns_features(self) -> bool:
        return self.layer is not None or self.pool_index is not None

    def _grid(self, feats: Tensor) -> Tensor:
        if self.reshape == "vit":
            return tokens_to_grid(feats, getattr(self.net, "num_prefix_tokens", None) if self.layer else None)
        if feats.ndim != 4:
            raise ModelAdapterError(
                f"{self.reference}: the feature map has shape {tuple(feats.shape)}, not (B, K, h, w); "
                "for token features pass --reshape vit"
            )
        return feats

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x`` ``(B, 3, S, S)`` normalised -> ``(logits (B, C), features (B, K, h, w) | None)``."""
        feats: Tensor | None = None
        fold = self.reshape == "vit"
        if self.layer is not None:
            store: list[Tensor] = []
            module = dict(self.net.named_modules())[self.layer]
            prefix = getattr(self.net, "num_prefix_tokens", None)

            def hook(_m: nn.Module, _i: Any, out: Any) -> Any:
                first = out if isinstance(out, Tensor) else out[0]
                if not fold or first.ndim != 3:
                    store.append(first)
                    return None
                grid, rebuilt = fold_tokens(first, prefix)  # the grid feeds the rest of the net
                store.append(grid)
                return rebuilt if isinstance(out, Tensor) else (rebuilt, *out[1:])

            handle = module.register_forward_hook(hook)
            try:
                logits = model_output_logits(self.net(x))
            finally:
                handle.remove()
            if len(store) != 1:
                raise ModelAdapterError(f"{self.reference}: layer {self.layer!r} ran {len(store)} times in one forward; pick a module that runs once")
            feats = store[0]
        elif self.pool_index is not None:
            tracer = _Tracer(tokens=fold, capture=self.pool_index, fold=fold)
            with tracer:
                logits = model_output_logits(self.net(x))
            if not tracer.pools:
                raise ModelAdapterError(f"{self.reference}: the global pooling seen on the probe did not run; {_HINT}")
            feats = tracer.grid if tracer.grid is not None else tracer.pools[0].inp
        else:
            logits = model_output_logits(self.net(x))
        if feats is not None:
            feats = self._grid(feats)
        if not self._checked and feats is not None:
            self.check_identity(logits, feats)
            self._checked = True
        return logits, feats

    def classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (C, K), b (C,))`` of the linear layer of the CAM pair (zero bias if it has none)."""
        if self.spec.head not in ("gap", "gmp") or self.classifier_params is None:
            raise CamNotApplicable(f"model '{self.spec.name}' has no GAP/GMP + linear pair: CAM does not apply (use a gradient map)")
        params = dict(self.net.named_parameters())
        weight = params[self.classifier_params[0]]
        bias = params[self.classifier_params[1]] if self.classifier_params[1] else torch.zeros(weight.shape[0], device=weight.device, dtype=weight.dtype)
        return weight, bias

    def weights_module(self) -> nn.Module:
        return self.net

    def check_identity(self, logits: Tensor, feats: Tensor) -> None:
        """Raise :class:`ModelAdapterError` unless pool(F) @ W.T + b == logits (module docstring bound)."""
        weight, bias = self.classifier()
        if feats.shape[1] != weight.shape[1]:
            raise ModelAdapterError(
                f"{self.reference}: the feature map has {feats.shape[1]} channels but the classifier takes "
                f"{weight.shape[1]} inputs; {_HINT}"
            )
        hw = feats.shape[2] * feats.shape[3]
        f64 = feats.detach().double()
        err, over = _identity_error(_pool(f64, self.spec.head), _pool(f64.abs(), self.spec.head), weight, bias, logits, hw)
        if over > 0:
            raise ModelAdapterError(
                f"{self.reference}: the CAM identity ({'mean' if self.spec.head == 'gap' else 'max'}-pooled features @ W.T + b "
                f"= logits) fails by {err:.3g} on this batch: the feature map and classifier found are not a "
                f"GAP/GMP pair; {_HINT}, or use a gradient method (--method gradcam --layer NAME)"
            )

    def manifest_info(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "mean": list(self.preprocessing.mean),
            "std": list(self.preprocessing.std),
            "preprocessing": self.preprocessing.manifest(),
            "layer": self.layer,
            "classifier": self.classifier_name,
            "reshape": self.reshape,
            "detected": self.detected,
            **self.build_flags,
        }


def _sanitize(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    return name or "model"


def _module(net: nn.Module, name: str, flag: str) -> nn.Module:
    modules = dict(net.named_modules())
    for key in (name, name[4:] if name.startswith("net.") else None):
        if key and key in modules:
            return modules[key]
    close = [n for n in modules if n and n.endswith(name.split(".")[-1])][:5]
    raise ModelAdapterError(f"{flag} {name!r}: no such module in the model; e.g. {close or [n for n in modules if n][:6]}")


def _strip_net(name: str | None) -> str | None:
    return name[4:] if name and name.startswith("net.") and name != "net." else name


def wrap_module(
    net: nn.Module,
    *,
    reference: str,
    name: str | None = None,
    layer: str | None = None,
    classifier: str | None = None,
    reshape: str | None = None,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    require_cam: bool = True,
    weights_note: str = "user model",
) -> UserModel:
    """Wrap ``net`` (any classifier returning ``(B, C)`` logits) as a :class:`UserModel`, in eval mode.

    Args:
        net: the network; it is put in eval mode and probed once on CPU-random input.
        reference: how the user named it (recorded in the manifest).
        name: run name (default: ``reference`` made file-name safe).
        layer, classifier: module names overriding the traced feature map / linear layer.
        reshape: ``'vit'`` to fold token features into the patch grid.
        input_size, mean, std: preprocessing overrides (see :func:`resolve_preprocessing`).
        require_cam: True for ``--method cam``: no GAP/GMP pair is an error; False: head ``'fc'``.
        weights_note: text for ``bench list`` / the manifest.

    Raises:
        ModelAdapterError: bad names, no pair (``require_cam``), failed CAM identity.
    """
    if reshape is not None and reshape not in RESHAPES:
        raise ModelAdapterError(f"--reshape must be one of {RESHAPES}, got {reshape!r}")
    if not isinstance(net, nn.Module):
        raise ModelAdapterError(f"{reference}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    layer, classifier = _strip_net(layer), _strip_net(classifier)
    net = net.eval()
    pre = resolve_preprocessing(net, input_size, mean, std)
    tokens = reshape == "vit"
    hook_store: list[Tensor] = []
    handle = None
    if layer is not None:
        module = _module(net, layer, "--layer")
        layer = next(n for n, m in net.named_modules() if m is module)
        handle = module.register_forward_hook(lambda _m, _i, out: hook_store.append(out if isinstance(out, Tensor) else out[0]))
    try:
        param = next(iter(net.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, pre.input_size, pre.input_size, generator=gen).to(device)
        tracer = _Tracer(tokens=tokens)
        with torch.no_grad(), tracer:
            logits = model_output_logits(net(x))
    except ModelAdapterError:
        raise
    except Exception as exc:
        raise ModelAdapterError(
            f"{reference}: a forward pass on a (2, 3, {pre.input_size}, {pre.input_size}) input failed "
            f"({type(exc).__name__}: {exc}); check --input-size"
        ) from exc
    finally:
        if handle is not None:
            handle.remove()

    # the classifier: named, else the last linear call that produced the logits
    cls_params: tuple[str, str | None] | None = None
    cls_input: Tensor | None = None
    if classifier is not None:
        lin = _module(net, classifier, "--classifier")
        if not isinstance(lin, nn.Linear):
            raise ModelAdapterError(f"--classifier {classifier!r} is a {type(lin).__name__}, not an nn.Linear")
        cls_params = (_param_name(net, lin.weight), _param_name(net, lin.bias))  # type: ignore[assignment]
        matches = [c for c in tracer.linears if c[1] is lin.weight]
        cls_input = matches[-1][0] if matches else None
    else:
        for inp, weight, bias, out in reversed(tracer.linears):
            if out is logits or (out.shape == logits.shape and torch.equal(out, logits)):
                wname = _param_name(net, weight)
                if wname is not None:
                    cls_params = (wname, _param_name(net, bias))
                    cls_input = inp
                break
    cls_name = None
    if cls_params is not None:
        cls_name = cls_params[0].rsplit(".", 1)[0] if "." in cls_params[0] else cls_params[0]

    head, pool_index, detected = "fc", None, "none"
    feats: Tensor | None = None
    if layer is not None:
        if len(hook_store) != 1:
            raise ModelAdapterError(f"--layer {layer!r} ran {len(hook_store)} times in one forward; pick a module that runs once")
        feats = hook_store[0]
        detected = "layer"
    elif cls_input is not None:
        for pool in reversed(tracer.pools):
            if pool.out.numel() == cls_input.numel() and torch.equal(pool.out.reshape(cls_input.shape), cls_input):
                feats, pool_index, head, detected = pool.inp, pool.index, pool.kind, "traced"
                break

    spec_grid = 0
    if feats is not None:
        grid_feats = tokens_to_grid(feats, getattr(net, "num_prefix_tokens", None) if layer else None) if tokens else feats
        if grid_feats.ndim != 4:
            raise ModelAdapterError(f"{reference}: the feature map has shape {tuple(grid_feats.shape)}, not (B, K, h, w); for token features pass --reshape vit")
        spec_grid = int(grid_feats.shape[2])  # the map's height (the grid side for square maps)
        if cls_params is not None:
            probe = UserModel(
                ModelSpec("probe", None, "probe", "gap", pre.input_size, spec_grid, pre.mean, pre.std, ""), net,
                reference=reference, preprocessing=pre, num_classes=logits.shape[1], layer=layer,
                classifier_params=cls_params, classifier_name=cls_name, pool_index=pool_index, reshape=reshape, detected=detected,
            )  # fmt: skip
            heads = [head] if detected == "traced" else ["gap", "gmp"]
            for candidate in heads:
                probe.spec = ModelSpec("probe", None, "probe", candidate, pre.input_size, spec_grid, pre.mean, pre.std, "")
                try:
                    probe.check_identity(logits, grid_feats)
                except ModelAdapterError:
                    if require_cam and detected == "traced":
                        raise
                    continue
                head = candidate
                break
            else:
                head = "fc"
    if head == "fc" and require_cam:
        what = (
            f"the feature map of --layer {layer!r} and the classifier satisfy neither the GAP nor the GMP CAM identity"
            if layer is not None
            else "no global average/max pooling feeding the last linear layer was found"
        )
        if layer is None and not tokens and _pools_tokens(net, x, cls_input):
            what += " but the classifier pools a token sequence (B, N, C), as a ViT/DeiT does; pass --reshape vit"
            raise ModelAdapterError(f"{reference}: {what}")
        raise ModelAdapterError(f"{reference}: {what}, so CAM does not apply; {_HINT}, or use a gradient method (--method gradcam|gradcampp|backprop)")
    if head == "fc" and layer is None:
        pool_index = None  # a traced pooling that is not a CAM pair: no features
    run_name = _sanitize(name or reference)
    spec = ModelSpec(run_name, None, f"{run_name}-user", head, pre.input_size, spec_grid if head != "fc" else 0, pre.mean, pre.std, weights_note)
    return UserModel(
        spec, net, reference=reference, preprocessing=pre, num_classes=int(logits.shape[1]), layer=layer,
        classifier_params=cls_params if head != "fc" else None, classifier_name=cls_name, pool_index=pool_index,
        reshape=reshape, detected=detected,
    ).eval()  # fmt: skip
