"""Caffe ``NetParameter`` -> the network's architecture as plain data (dicts, lists, numbers).

The plain form is what :class:`bench.models.caffe.net.CaffeNet` is built from and what
``bench convert caffe`` saves (it loads with ``torch.load(..., weights_only=True)``)::

    {"name": str, "input": {"name": str, "shape": [C, H, W]}, "output": str,
     "layers": [{"name", "type", "bottom": [...], "top": [...], <parameters>}, ...]}

Rules (Caffe's, for the TEST phase):

* layers are kept by Caffe's ``NetStateRule`` logic for the state ``phase: TEST, level: 0,
  no stages``: with ``include`` rules a layer is kept iff one matches; otherwise it is dropped
  iff an ``exclude`` rule matches;
* data layers (``Data``, ``ImageData``, ...) are skipped; their first top is the network input,
  of shape ``(3, crop_size, crop_size)`` from ``transform_param``; accuracy and loss layers are
  skipped; the input may also come from ``input`` + ``input_dim``/``input_shape`` or an ``Input``
  layer;
* a ``Softmax`` as the last layer is dropped, so the network returns class scores; a Softmax
  anywhere else is an error;
* supported types: Convolution, Pooling (MAX/AVE, ``global_pooling``, ceil/floor rounding), LRN
  (ACROSS_CHANNELS), InnerProduct, Concat (channels), ReLU (with ``negative_slope``), Dropout
  (identity at test); anything else is an error naming the layer.
"""

from __future__ import annotations

import math
from typing import Any

from bench.models.caffe import schema
from bench.models.caffe.io import CaffeFormatError

__all__ = ["BUILT_TYPES", "SKIPPED_TYPES", "net_to_arch", "pool_output_size", "infer_shapes", "layer_type"]

BUILT_TYPES = ("Convolution", "Pooling", "LRN", "InnerProduct", "Concat", "ReLU", "Dropout", "Softmax")
_DATA_TYPES = ("Data", "ImageData", "MemoryData", "HDF5Data", "WindowData", "DummyData")
SKIPPED_TYPES = (
    *_DATA_TYPES, "Accuracy", "SoftmaxWithLoss", "EuclideanLoss", "MultinomialLogisticLoss",
    "HingeLoss", "SigmoidCrossEntropyLoss", "InfogainLoss", "Silence",
)  # fmt: skip
_TEST = 1  # caffe.Phase.TEST


def layer_type(layer: Any) -> str:
    """The layer's type string in the new dialect (V1's enum mapped to its name)."""
    if isinstance(layer, schema.V1LayerParameter):
        number = int(layer.type)
        if number in schema.V1_TYPE_NAMES:
            return schema.V1_TYPE_NAMES[number]
        return schema.V1LayerParameter.LayerType.Name(number) if number else "NONE"
    return str(layer.type)


def _rule_matches(rule: Any) -> bool:
    """Caffe's ``Net::StateMeetsRule`` for the state phase=TEST, level=0, no stages."""
    if rule.HasField("phase") and rule.phase != _TEST:
        return False
    if rule.HasField("min_level") and 0 < rule.min_level:
        return False
    if rule.HasField("max_level") and 0 > rule.max_level:
        return False
    if len(rule.stage):  # the state has no stages
        return False
    return True  # not_stage: none of them is in the (empty) state


def _in_test_phase(layer: Any) -> bool:
    if len(layer.include):
        return any(_rule_matches(r) for r in layer.include)
    return not any(_rule_matches(r) for r in layer.exclude)


def _pair(repeated: Any, h: Any, w: Any, has_h: bool, default: int, what: str, where: str) -> list[int]:
    if has_h:
        return [int(h), int(w)]
    values = [int(v) for v in repeated]
    if not values:
        return [default, default]
    if len(values) == 1:
        return [values[0], values[0]]
    if len(values) == 2:
        return values
    raise CaffeFormatError(f"{where}: {what} has {len(values)} values; only 2-D is supported")


def _conv_params(p: Any, where: str) -> dict[str, Any]:
    if p.axis != 1 or p.force_nd_im2col:
        raise CaffeFormatError(f"{where}: only 2-D convolution over axis 1 is supported")
    if not p.HasField("num_output"):
        raise CaffeFormatError(f"{where}: convolution_param.num_output is missing")
    kernel = _pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), 0, "kernel_size", where)
    if min(kernel) < 1:
        raise CaffeFormatError(f"{where}: convolution_param needs kernel_size (or kernel_h/kernel_w)")
    has_pad_hw = p.HasField("pad_h") or p.HasField("pad_w")
    return {
        "num_output": int(p.num_output),
        "kernel": kernel,
        "stride": _pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1, "stride", where),
        "pad": _pair(p.pad, p.pad_h, p.pad_w, has_pad_hw, 0, "pad", where),
        "dilation": _pair(p.dilation, 0, 0, False, 1, "dilation", where),
        "group": int(p.group),
        "bias_term": bool(p.bias_term),
    }


def _pool_params(p: Any, where: str) -> dict[str, Any]:
    method = ("MAX", "AVE", "STOCHASTIC")[int(p.pool)]
    if method == "STOCHASTIC":
        raise CaffeFormatError(f"{where}: STOCHASTIC pooling is not supported")
    global_pooling = bool(p.global_pooling)
    if global_pooling:
        kernel = [0, 0]
    elif p.HasField("kernel_h") or p.HasField("kernel_w"):
        kernel = [int(p.kernel_h), int(p.kernel_w)]
    elif p.HasField("kernel_size"):
        kernel = [int(p.kernel_size)] * 2
    else:
        raise CaffeFormatError(f"{where}: pooling_param needs kernel_size, kernel_h/kernel_w or global_pooling")
    if not global_pooling and min(kernel) < 1:
        raise CaffeFormatError(f"{where}: pooling kernel must be >= 1")
    pad = [int(p.pad_h), int(p.pad_w)] if (p.HasField("pad_h") or p.HasField("pad_w")) else [int(p.pad)] * 2
    stride = [int(p.stride_h), int(p.stride_w)] if (p.HasField("stride_h") or p.HasField("stride_w")) else [int(p.stride)] * 2
    if global_pooling and (pad != [0, 0] or stride != [1, 1]):
        raise CaffeFormatError(f"{where}: global pooling takes no pad and stride 1")
    if not global_pooling and (pad[0] >= kernel[0] or pad[1] >= kernel[1]):
        raise CaffeFormatError(f"{where}: pooling pad must be smaller than the kernel")
    return {
        "pool": method,
        "kernel": kernel,
        "stride": stride,
        "pad": pad,
        "global_pooling": global_pooling,
        "round_mode": ("CEIL", "FLOOR")[int(p.round_mode)],
    }


def _lrn_params(p: Any, where: str) -> dict[str, Any]:
    if int(p.norm_region) != 0:
        raise CaffeFormatError(f"{where}: LRN norm_region WITHIN_CHANNEL is not supported (ACROSS_CHANNELS only)")
    if p.local_size % 2 == 0:
        raise CaffeFormatError(f"{where}: LRN local_size must be odd (Caffe's rule), got {p.local_size}")
    return {"local_size": int(p.local_size), "alpha": float(p.alpha), "beta": float(p.beta), "k": float(p.k)}


def _ip_params(p: Any, where: str) -> dict[str, Any]:
    if p.axis != 1:
        raise CaffeFormatError(f"{where}: InnerProduct over axis {p.axis} is not supported (axis 1 only)")
    if not p.HasField("num_output"):
        raise CaffeFormatError(f"{where}: inner_product_param.num_output is missing")
    return {"num_output": int(p.num_output), "bias_term": bool(p.bias_term), "transpose": bool(p.transpose)}


def _concat_params(p: Any, where: str) -> dict[str, Any]:
    axis = int(p.axis) if p.HasField("axis") else int(p.concat_dim)
    if axis not in (1, -3):
        raise CaffeFormatError(f"{where}: Concat over axis {axis} is not supported (channels only)")
    return {"axis": 1}


def _input_shape(net: Any, layers: list[Any], origin: str) -> tuple[str, list[int]] | None:
    if len(net.input):
        name = str(net.input[0])
        if len(net.input) > 1:
            raise CaffeFormatError(f"{origin}: {len(net.input)} inputs; one image input is supported")
        if len(net.input_shape):
            dims = [int(d) for d in net.input_shape[0].dim]
        elif len(net.input_dim):
            dims = [int(d) for d in net.input_dim]
        else:
            raise CaffeFormatError(f"{origin}: input '{name}' has no input_dim/input_shape")
        if len(dims) != 4:
            raise CaffeFormatError(f"{origin}: input '{name}' must be 4-D (N, C, H, W), got {dims}")
        return name, dims[1:]
    for layer in layers:
        kind = layer_type(layer)
        if kind == "Input":
            dims = [int(d) for d in layer.input_param.shape[0].dim] if len(layer.input_param.shape) else []
            if len(dims) != 4:
                raise CaffeFormatError(f"{origin}: Input layer '{layer.name}' needs a 4-D shape, got {dims}")
            return str(layer.top[0]), dims[1:]
        if kind in _DATA_TYPES:
            crop = int(layer.transform_param.crop_size) or int(layer.data_param.crop_size) or int(layer.image_data_param.crop_size)
            if not crop:
                raise CaffeFormatError(f"{origin}: data layer '{layer.name}' has no crop_size; the input size is unknown")
            return str(layer.top[0]), [3, crop, crop]
    return None


def net_to_arch(net: Any, origin: str = "<prototxt>") -> dict[str, Any]:
    """The TEST-phase network of a parsed prototxt as plain data (see module docstring).

    Raises:
        CaffeFormatError: unsupported layer type or parameter (names the layer), no input shape,
            a layer reading a blob nothing produces.
    """
    if len(net.layer) and len(net.layers):
        raise CaffeFormatError(f"{origin}: mixes 'layer' and legacy 'layers' blocks")
    source = list(net.layer) if len(net.layer) else list(net.layers)
    kept = [layer for layer in source if _in_test_phase(layer)]
    found = _input_shape(net, kept, origin)
    if found is None:
        raise CaffeFormatError(f"{origin}: no input shape (input + input_dim, an Input layer, or a data layer with crop_size)")
    input_name, input_shape = found
    blobs = {input_name}
    layers: list[dict[str, Any]] = []
    for layer in kept:
        kind = layer_type(layer)
        where = f"{origin}: layer '{layer.name}' ({kind})"
        if kind in SKIPPED_TYPES or kind == "Input":
            continue
        if kind not in BUILT_TYPES:
            raise CaffeFormatError(
                f"{where}: unsupported layer type '{kind}'; supported: {', '.join(BUILT_TYPES)} "
                f"(skipped: data, accuracy and loss layers)"
            )
        bottom, top = [str(b) for b in layer.bottom], [str(t) for t in layer.top]
        missing = [b for b in bottom if b not in blobs]
        if missing:
            raise CaffeFormatError(f"{where}: reads blob(s) {missing} that no earlier layer produces")
        n_bottom = None if kind == "Concat" else 1
        if (n_bottom is not None and len(bottom) != n_bottom) or not bottom or len(top) != 1:
            raise CaffeFormatError(f"{where}: expected {n_bottom or 'one or more'} bottom(s) and one top, got {bottom} -> {top}")
        entry: dict[str, Any] = {"name": str(layer.name), "type": kind, "bottom": bottom, "top": top}
        if kind == "Convolution":
            entry.update(_conv_params(layer.convolution_param, where))
        elif kind == "Pooling":
            entry.update(_pool_params(layer.pooling_param, where))
        elif kind == "LRN":
            entry.update(_lrn_params(layer.lrn_param, where))
        elif kind == "InnerProduct":
            entry.update(_ip_params(layer.inner_product_param, where))
        elif kind == "Concat":
            entry.update(_concat_params(layer.concat_param, where))
        elif kind == "ReLU":
            entry["negative_slope"] = float(layer.relu_param.negative_slope)
        elif kind == "Dropout":
            entry["dropout_ratio"] = float(layer.dropout_param.dropout_ratio)
        layers.append(entry)
        blobs.update(top)
    if not layers:
        raise CaffeFormatError(f"{origin}: no layers to build")
    for i, entry in enumerate(layers):
        if entry["type"] == "Softmax" and i != len(layers) - 1:
            raise CaffeFormatError(f"{origin}: layer '{entry['name']}' (Softmax) is not the last layer; only a final Softmax is supported")
    if layers[-1]["type"] == "Softmax":
        output = layers[-1]["bottom"][0]
        layers = layers[:-1]
    else:
        output = layers[-1]["top"][0]
    names = [e["name"] for e in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CaffeFormatError(f"{origin}: duplicate layer name(s) {dupes}")
    arch = {
        "name": str(net.name),
        "input": {"name": input_name, "shape": [int(v) for v in input_shape]},
        "output": output,
        "layers": layers,
    }
    infer_shapes(arch, origin)  # fails early, naming the layer, if shapes do not fit
    return arch


def pool_output_size(
    size: int, kernel: int, stride: int, pad: int, round_mode: str = "CEIL", padded: bool | None = None
) -> int:
    """Caffe's pooled size along one axis (``PoolingLayer::Reshape``).

    ``CEIL``: ``ceil((size + 2 pad - kernel) / stride) + 1``; when the layer pads (``padded``:
    ``pad_h || pad_w``, default ``pad > 0``) and the last window would start at or past
    ``size + pad`` it is dropped (one less). ``FLOOR``: the floor version (newer Caffe's
    ``round_mode``).
    """
    span = size + 2 * pad - kernel
    if round_mode == "CEIL":
        out = int(math.ceil(span / stride)) + 1
    else:
        out = span // stride + 1
    if (pad > 0 if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def infer_shapes(arch: dict[str, Any], origin: str = "<arch>") -> list[dict[str, Any]]:
    """Per layer, in order: ``{"name", "inputs": [shape, ...], "output": shape}``.

    Shapes are per image, ``[C, H, W]`` or ``[N]`` (after an InnerProduct).

    Also checks what Caffe checks at setup (channels divisible by ``group``, concat spatial
    sizes equal, outputs at least 1x1), naming the layer.
    """
    shapes: dict[str, list[int]] = {arch["input"]["name"]: list(arch["input"]["shape"])}
    out: list[dict[str, Any]] = []
    for e in arch["layers"]:
        where = f"{origin}: layer '{e['name']}' ({e['type']})"
        ins = [shapes[b] for b in e["bottom"]]
        x = ins[0]
        kind = e["type"]
        if kind == "Convolution":
            if len(x) != 3:
                raise CaffeFormatError(f"{where}: needs a (C, H, W) input, got {x}")
            c, h, w = x
            g = e["group"]
            if c % g or e["num_output"] % g:
                raise CaffeFormatError(f"{where}: channels {c} -> {e['num_output']} not divisible by group {g}")
            hw = []
            for size, k, s, p, d in zip((h, w), e["kernel"], e["stride"], e["pad"], e["dilation"]):
                hw.append((size + 2 * p - (d * (k - 1) + 1)) // s + 1)
            y = [e["num_output"], *hw]
        elif kind == "Pooling":
            if len(x) != 3:
                raise CaffeFormatError(f"{where}: needs a (C, H, W) input, got {x}")
            c, h, w = x
            if e["global_pooling"]:
                y = [c, 1, 1]
            else:
                y = [c]
                for size, k, s, p in zip((h, w), e["kernel"], e["stride"], e["pad"]):
                    n = pool_output_size(size, k, s, p, e["round_mode"], padded=max(e["pad"]) > 0)
                    if n >= 1 and (n - 1) * s - p >= size:  # Caffe would divide by 0 / emit -FLT_MAX
                        raise CaffeFormatError(f"{where}: the last pooling window lies outside the input ({size} px)")
                    y.append(n)
        elif kind == "InnerProduct":
            y = [e["num_output"]]
        elif kind == "Concat":
            if any(len(i) != 3 or i[1:] != x[1:] for i in ins):
                raise CaffeFormatError(f"{where}: inputs must share H and W, got {ins}")
            y = [sum(i[0] for i in ins), *x[1:]]
        else:  # ReLU, LRN, Dropout: same shape
            y = list(x)
        if len(y) == 3 and min(y[1:]) < 1:
            raise CaffeFormatError(f"{where}: output would be empty ({y}) for input {x}")
        shapes[e["top"][0]] = y
        out.append({"name": e["name"], "inputs": ins, "output": y})
    return out
