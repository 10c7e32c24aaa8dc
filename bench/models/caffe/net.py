"""The network of a Caffe file as a ``torch.nn.Module``, with Caffe's semantics (not PyTorch's defaults).

Built from the plain architecture of :mod:`bench.models.caffe.arch`. Per layer type:

* **Convolution**: ``F.conv2d`` with Caffe's pad/stride/dilation/group (same arithmetic as Caffe:
  ``out = (H + 2p - (d (k - 1) + 1)) // s + 1``).
* **Pooling**: output size from :func:`~bench.models.caffe.arch.pool_output_size` (ceil, minus one
  when the last window would start at or past ``H + p``); each window ``[i s - p, i s - p + k)``.
  MAX: the maximum over the window's pixels inside the image (padding is ``-inf``). AVE: the sum
  over the window's pixels inside the image divided by the window's size clipped to the padded
  extent, ``min(i s - p + k, H + p) - (i s - p)`` (per axis; the padding zeros count, pixels past
  ``H + p`` do not). ``global_pooling``: the kernel is the whole map.
* **LRN** (ACROSS_CHANNELS): ``y = x (k + alpha / n * sum_{c' in window(c)} x_{c'}^2)^(-beta)``,
  window ``[c - (n - 1)/2, c + (n - 1)/2]`` clipped to the channels (zeros outside). (PyTorch's
  ``LocalResponseNorm`` uses the same ``alpha / n``; we write it out to state it.)
* **InnerProduct**: flattens ``(C, H, W)`` in C-order, ``y = x W^T + b`` (``transpose`` handled).
* **Concat** on channels; **ReLU** (``negative_slope``: leaky); **Dropout**: identity (test phase).
* In-place layers (top == bottom) simply overwrite the blob.

Weights (:meth:`CaffeNet.load_caffe_blobs`) are matched by layer name; every Convolution and
InnerProduct must get its blobs, with a shape check naming the layer. Legacy 4-D blob shapes
``(1, 1, N, K)`` / ``(1, 1, 1, N)`` are accepted for the 2-D/1-D parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models.caffe.arch import infer_shapes, pool_output_size
from bench.models.caffe.io import CaffeFormatError

__all__ = ["CaffeNet", "caffe_pool2d", "caffe_lrn", "module_key"]


def module_key(layer_name: str) -> str:
    """The ``nn.Module`` child name of a Caffe layer: ``.`` is not allowed there, so it becomes ``_``."""
    return layer_name.replace(".", "_") or "_"


def _window_sizes(size: int, n_out: int, kernel: int, stride: int, pad: int) -> np.ndarray:
    start = np.arange(n_out) * stride - pad
    return np.minimum(start + kernel, size + pad) - start


def caffe_pool2d(
    x: Tensor, method: str, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
    round_mode: str = "CEIL", global_pooling: bool = False,
) -> Tensor:
    """Caffe's MAX/AVE pooling of ``x (B, C, H, W)`` (see the module docstring)."""
    h, w = x.shape[-2:]
    if global_pooling:
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    padded = ph > 0 or pw > 0
    oh = pool_output_size(h, kh, sh, ph, round_mode, padded)
    ow = pool_output_size(w, kw, sw, pw, round_mode, padded)
    need_h, need_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw  # extent covered, from -pad
    fill = float("-inf") if method == "MAX" else 0.0
    xp = F.pad(x, (pw, max(need_w - w - pw, 0), ph, max(need_h - h - ph, 0)), value=fill)
    xp = xp[..., :need_h, :need_w]
    if method == "MAX":
        return F.max_pool2d(xp, (kh, kw), (sh, sw))
    sums = F.avg_pool2d(xp, (kh, kw), (sh, sw), divisor_override=1)
    count = np.outer(_window_sizes(h, oh, kh, sh, ph), _window_sizes(w, ow, kw, sw, pw))
    return sums / torch.as_tensor(count, dtype=sums.dtype, device=sums.device)


def caffe_lrn(x: Tensor, local_size: int, alpha: float, beta: float, k: float) -> Tensor:
    """Caffe's ACROSS_CHANNELS LRN of ``x (B, C, H, W)``; ``local_size`` odd."""
    pre = (local_size - 1) // 2
    sq = F.pad(x * x, (0, 0, 0, 0, pre, local_size - 1 - pre))
    c = x.shape[1]
    total = sq[:, 0:c]
    for i in range(1, local_size):
        total = total + sq[:, i : i + c]
    return x * (k + (alpha / local_size) * total).pow(-beta)


class _Conv(nn.Conv2d):
    def __init__(self, e: dict[str, Any], in_channels: int) -> None:
        super().__init__(
            in_channels, e["num_output"], tuple(e["kernel"]), stride=tuple(e["stride"]), padding=tuple(e["pad"]),
            dilation=tuple(e["dilation"]), groups=e["group"], bias=e["bias_term"],
        )  # fmt: skip


class _Linear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.flatten(1))


class _Pool(nn.Module):
    def __init__(self, e: dict[str, Any]) -> None:
        super().__init__()
        self.method = e["pool"]
        self.kernel, self.stride, self.pad = tuple(e["kernel"]), tuple(e["stride"]), tuple(e["pad"])
        self.round_mode, self.global_pooling = e["round_mode"], e["global_pooling"]

    def forward(self, x: Tensor) -> Tensor:
        return caffe_pool2d(x, self.method, self.kernel, self.stride, self.pad, self.round_mode, self.global_pooling)


class _LRN(nn.Module):
    def __init__(self, e: dict[str, Any]) -> None:
        super().__init__()
        self.local_size, self.alpha, self.beta, self.k = e["local_size"], e["alpha"], e["beta"], e["k"]

    def forward(self, x: Tensor) -> Tensor:
        return caffe_lrn(x, self.local_size, self.alpha, self.beta, self.k)


class _ReLU(nn.Module):
    def __init__(self, slope: float) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) if self.slope == 0.0 else F.leaky_relu(x, self.slope)


class _Concat(nn.Module):
    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


class _Identity(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x


class CaffeNet(nn.Module):
    """A Caffe network (TEST phase) from its plain architecture; ``forward`` returns the scores.

    Attributes:
        arch: the plain architecture (see :mod:`bench.models.caffe.arch`).
        layers: ``nn.ModuleDict`` keyed by :func:`module_key` of each layer name.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        self.arch = arch
        shapes = infer_shapes(arch)
        self.layers = nn.ModuleDict()
        self._order: list[tuple[str, list[str], str]] = []
        for e, shape in zip(arch["layers"], shapes):
            kind = e["type"]
            if kind == "Convolution":
                module: nn.Module = _Conv(e, shape["inputs"][0][0])
            elif kind == "InnerProduct":
                module = _Linear(int(np.prod(shape["inputs"][0])), e["num_output"], bias=e["bias_term"])
            elif kind == "Pooling":
                module = _Pool(e)
            elif kind == "LRN":
                module = _LRN(e)
            elif kind == "ReLU":
                module = _ReLU(e["negative_slope"])
            elif kind == "Concat":
                module = _Concat()
            elif kind == "Dropout":
                module = _Identity()
            else:  # pragma: no cover - arch.net_to_arch admits only the types above
                raise CaffeFormatError(f"layer '{e['name']}': cannot build type '{kind}'")
            key = module_key(e["name"])
            if key in self.layers:
                raise CaffeFormatError(f"layer '{e['name']}': name clashes with another layer as module '{key}'")
            self.layers[key] = module
            self._order.append((key, list(e["bottom"]), e["top"][0]))

    def forward_blobs(self, x: Tensor, capture: int | None = None) -> tuple[Tensor, Tensor | None]:
        """``(output, input of layer number capture)``; ``x`` is the Caffe input (B, C, H, W)."""
        blobs = {self.arch["input"]["name"]: x}
        captured = None
        for i, (key, bottom, top) in enumerate(self._order):
            inputs = [blobs[b] for b in bottom]
            if i == capture:
                captured = inputs[0]
            blobs[top] = self.layers[key](*inputs)
        return blobs[self.arch["output"]], captured

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (the input of the dropped final Softmax) for Caffe-preprocessed ``x``."""
        return self.forward_blobs(x)[0]

    def load_caffe_blobs(self, blobs: dict[str, list[tuple[np.ndarray, bool]]], origin: str) -> None:
        """Copy a caffemodel's blobs (:func:`~bench.models.caffe.io.caffemodel_blobs`) into the layers.

        Raises:
            CaffeFormatError: a Convolution/InnerProduct without blobs in the file, a wrong blob
                count or shape (names the layer, expected and found shapes).
        """
        for e in self.arch["layers"]:
            module = self.layers[module_key(e["name"])]
            if e["type"] not in ("Convolution", "InnerProduct"):
                continue
            name = e["name"]
            if name not in blobs:
                raise CaffeFormatError(f"{origin}: no weights for layer '{name}' ({e['type']}); is it the caffemodel of this prototxt?")
            found = blobs[name]
            params = [module.weight] + ([module.bias] if module.bias is not None else [])
            if len(found) != len(params):
                raise CaffeFormatError(f"{origin}: layer '{name}' has {len(found)} blobs, the prototxt needs {len(params)}")
            for j, (param, (arr, legacy)) in enumerate(zip(params, found)):
                expected = tuple(param.shape)
                if e["type"] == "InnerProduct" and j == 0 and e["transpose"]:
                    expected = expected[::-1]
                shape = tuple(arr.shape)
                if legacy and len(shape) == 4 and len(expected) < 4:
                    lead = shape[: 4 - len(expected)]
                    if all(d == 1 for d in lead):
                        shape = shape[4 - len(expected) :]
                if shape != expected:
                    what = ("weight", "bias")[j]
                    raise CaffeFormatError(
                        f"{origin}: layer '{name}' {what} has shape {tuple(arr.shape)}, the prototxt needs {expected}"
                    )
                value = torch.from_numpy(np.ascontiguousarray(arr.reshape(shape)))
                if e["type"] == "InnerProduct" and j == 0 and e["transpose"]:
                    value = value.T.contiguous()
                with torch.no_grad():
                    param.copy_(value)
