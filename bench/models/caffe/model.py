"""Caffe networks in the harness: ``load_caffe``, the converted ``.pt`` file, and the CAM adapter.

* :func:`load_caffe` ``(prototxt, caffemodel) -> CaffeNet`` (forward = class scores).
* :func:`convert_caffe` writes ``NET.pt``: ``{"format": "bench-caffe-net", "version": 1,
  "arch": <plain data>, "state_dict": {...}, "meta": {...}}``, readable with
  ``torch.load(..., weights_only=True)``; :func:`load_converted` reads it back.
* :func:`find_cam_head` finds the CAM head of a network: the last layer is an InnerProduct whose
  input (through Dropout layers) is an AVE Pooling with no padding that is global
  (``global_pooling``) or whose kernel covers the whole map at the network's input size.
* :func:`caffe_bench_model` wraps a :class:`CaffeNet` as the harness's
  :class:`~bench.models.registry.BenchModel`: input normalised with ``spec.mean``/``spec.std`` on
  RGB in [0, 1] gives ``255 * rgb - mean_rgb`` (the release's per-channel mean
  B 104.007, G 116.669, R 122.679); the adapter flips it to BGR, as Caffe nets expect.
  ``forward -> (scores, features)`` with ``features`` the input of the CAM pooling, and
  ``classifier() -> (W, b)`` of the last InnerProduct, so that
  ``scores == features.mean((2, 3)) @ W.T + b``.
* :func:`build_caffe_model` resolves the model strings ``caffe:NET.pt`` and ``DEPLOY.prototxt``
  (with ``weights=X.caffemodel``) for :func:`bench.models.build_model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.models.caffe.arch import infer_shapes, net_to_arch
from bench.models.caffe.io import CaffeFormatError, caffemodel_blobs, read_caffemodel, read_prototxt
from bench.models.caffe.net import CaffeNet, module_key
from bench.models.base import BenchModel, ModelSpec
from bench.models.sources import WeightsError, WeightsInfo, sha256_file

__all__ = [
    "CAFFE_MEAN_BGR",
    "CONVERTED_FORMAT",
    "load_caffe",
    "convert_caffe",
    "load_converted",
    "find_cam_head",
    "CaffeCamNet",
    "caffe_bench_model",
    "is_caffe_model_string",
    "build_caffe_model",
    "guess_paper_name",
]

#: The release's per-channel mean, BGR order, on 0-255 pixel values (``prepare_image`` of the
#: Caffe ImageNet examples; the ILSVRC-2012 mean image averaged per channel).
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.007, 116.669, 122.679)
CONVERTED_FORMAT = "bench-caffe-net"
_VERSION = 1


def load_caffe(prototxt: str | os.PathLike[str], caffemodel: str | os.PathLike[str]) -> CaffeNet:
    """The TEST-phase network of ``prototxt`` with the weights of ``caffemodel``, in eval mode.

    ``forward(x)`` takes Caffe's input (BGR, 0-255 minus the mean, ``(B, 3, H, W)``) and returns
    the class scores (the input of a final Softmax, which is dropped).

    Raises:
        FileNotFoundError: a file is missing.
        CaffeFormatError: unreadable file, unsupported layer (named), missing or misshapen weights.
    """
    arch = net_to_arch(read_prototxt(prototxt), origin=str(prototxt))
    net = CaffeNet(arch)
    net.load_caffe_blobs(caffemodel_blobs(read_caffemodel(caffemodel), str(caffemodel)), origin=str(caffemodel))
    return net.eval()


def guess_paper_name(*names: str) -> str | None:
    """The CAM paper's row for the authors' released files, from their file names (else None)."""
    text = " ".join(names).lower()
    if "vgg16" in text:
        return "VGGnet-GAP"
    if "googlenet" in text:
        return "GoogLeNet-GAP"
    if "alexnetplus" in text:
        return "AlexNet*-GAP"
    return None


def convert_caffe(
    deploy: str | os.PathLike[str], caffemodel: str | os.PathLike[str], out: str | os.PathLike[str],
    paper_name: str | None = None,
) -> Path:
    """Write ``out`` (architecture as plain data + state dict; see the module docstring).

    ``meta`` records the source files (name, sha256) and the paper row (``paper_name``, else
    guessed from the file names). Returns the path written.
    """
    deploy, caffemodel, out = Path(deploy), Path(caffemodel), Path(out)
    net = load_caffe(deploy, caffemodel)
    meta = {
        "prototxt": deploy.name,
        "prototxt_sha256": sha256_file(deploy),
        "caffemodel": caffemodel.name,
        "caffemodel_sha256": sha256_file(caffemodel),
        "paper_name": paper_name if paper_name is not None else guess_paper_name(deploy.name, caffemodel.name),
    }
    payload = {
        "format": CONVERTED_FORMAT,
        "version": _VERSION,
        "arch": net.arch,
        "state_dict": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "meta": meta,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out)
    return out


def load_converted(path: str | os.PathLike[str]) -> tuple[CaffeNet, dict[str, Any]]:
    """Read a file written by :func:`convert_caffe` (``weights_only=True``): ``(net in eval mode, meta)``.

    Raises:
        FileNotFoundError: missing file.
        CaffeFormatError: not such a file (names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"converted Caffe network not found: {path} (make it with `bench convert caffe`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: not our file
        raise CaffeFormatError(f"{path}: not a converted Caffe network ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CONVERTED_FORMAT:
        raise CaffeFormatError(f"{path}: not a converted Caffe network (make it with `bench convert caffe DEPLOY CAFFEMODEL --out {path.name}`)")
    if payload.get("version") != _VERSION:
        raise CaffeFormatError(f"{path}: converted with format version {payload.get('version')}, this reader knows {_VERSION}")
    net = CaffeNet(payload["arch"])
    missing, unexpected = net.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise CaffeFormatError(f"{path}: state dict does not fit its architecture (missing {missing}, unexpected {unexpected})")
    return net.eval(), dict(payload.get("meta", {}))


def find_cam_head(arch: dict[str, Any]) -> tuple[int, int] | None:
    """``(pool index, inner-product index)`` of the GAP head (see the module docstring), else None."""
    layers = arch["layers"]
    if not layers or layers[-1]["type"] != "InnerProduct":
        return None
    fc = len(layers) - 1
    blob, i = layers[fc]["bottom"][0], fc
    shapes = infer_shapes(arch)
    while True:
        producers = [j for j in range(i) if blob in layers[j]["top"]]
        if not producers:
            return None
        j = producers[-1]
        e = layers[j]
        if e["type"] == "Dropout":
            blob, i = e["bottom"][0], j
            continue
        if e["type"] != "Pooling" or e["pool"] != "AVE" or e["pad"] != [0, 0]:
            return None
        _, h, w = shapes[j]["inputs"][0]
        if e["global_pooling"] or (e["kernel"] == [h, w]):
            return j, fc
        return None


class CaffeCamNet(nn.Module):
    """A :class:`CaffeNet` in the harness's model interface (``forward_cam``, ``cam_classifier``...)."""

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(self, net: CaffeNet) -> None:
        super().__init__()
        self.caffe = net
        self.head = find_cam_head(net.arch)
        self._fc = net.layers[module_key(net.arch["layers"][-1]["name"])]

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``x``: ``255 * rgb - mean_rgb``, ``(B, 3, S, S)`` -> ``(scores, CAM features | None)``."""
        bgr = x.flip(1)
        if self.head is None:
            return self.caffe(bgr), None
        pool = self.head[0]
        scores, features = self.caffe.forward_blobs(bgr, capture=pool)
        return scores, features

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        from bench.models.surgery import CamNotApplicable

        if self.head is None:
            raise CamNotApplicable("this Caffe network has no GAP head (AVE pooling over the whole map -> InnerProduct)")
        w = self._fc.weight
        b = self._fc.bias if self._fc.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        return w, b

    def weights_module(self) -> nn.Module:
        return self.caffe


def caffe_bench_model(net: CaffeNet, name: str, paper_name: str | None = None, weights_note: str = "") -> BenchModel:
    """``net`` as a :class:`~bench.models.registry.BenchModel` (spec derived from the network)."""
    arch = net.arch
    _, height, width = arch["input"]["shape"]
    if height != width:
        raise CaffeFormatError(f"{name}: input {height}x{width} is not square; the harness feeds square inputs")
    wrapped = CaffeCamNet(net)
    grid = 0
    if wrapped.head is not None:
        grid = int(infer_shapes(arch)[wrapped.head[0]]["inputs"][0][1])
    b, g, r = CAFFE_MEAN_BGR
    spec = ModelSpec(
        name=name,
        paper_name=paper_name,
        family=f"caffe:{name}",
        head="gap" if wrapped.head is not None else "fc",
        input_size=int(height),
        grid=grid,
        mean=(r / 255.0, g / 255.0, b / 255.0),
        std=(1 / 255.0, 1 / 255.0, 1 / 255.0),
        weights_note=weights_note or "Caffe model",
    )
    return BenchModel(spec, wrapped).eval()


def is_caffe_model_string(model: str) -> bool:
    """True for ``caffe:NET.pt`` and ``*.prototxt`` model strings."""
    return model.startswith("caffe:") or model.lower().endswith(".prototxt")


def build_caffe_model(model: str, weights: str | os.PathLike[str] | None = None) -> tuple[BenchModel, WeightsInfo]:
    """``(BenchModel, WeightsInfo)`` for ``caffe:NET.pt`` (no ``weights``) or ``DEPLOY.prototxt`` + ``weights``.

    The model's name is the file's stem; its paper row comes from the converted file's meta
    (or the file names).

    Raises:
        FileNotFoundError / CaffeFormatError: as :func:`load_converted` / :func:`load_caffe`.
        WeightsError: ``caffe:`` with ``weights``, or a prototxt without.
    """
    if model.startswith("caffe:"):
        if weights is not None:
            raise WeightsError(f"{model}: a converted Caffe network holds its weights; drop --weights")
        path = Path(model[len("caffe:") :]).expanduser().resolve()
        net, meta = load_converted(path)
        bench_model = caffe_bench_model(
            net, path.stem, meta.get("paper_name"),
            f"converted Caffe model {path.name} (from {meta.get('caffemodel', '?')})",
        )  # fmt: skip
        return bench_model, WeightsInfo("file", str(path), sha256_file(path))
    if weights is None:
        raise WeightsError(f"{model}: a Caffe prototxt needs its weights: --weights X.caffemodel")
    deploy, caffemodel = Path(model).expanduser().resolve(), Path(weights).expanduser().resolve()
    net = load_caffe(deploy, caffemodel)
    bench_model = caffe_bench_model(
        net, deploy.stem, guess_paper_name(deploy.name, caffemodel.name), f"Caffe model {caffemodel.name}"
    )
    return bench_model, WeightsInfo("file", str(caffemodel), sha256_file(caffemodel))
