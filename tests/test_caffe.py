"""Caffe models without Caffe (bench.models.caffe): schema, both dialects, Caffe semantics, convert, CAM head.

The networks here are tiny and written with protobuf in both Caffe dialects; their forward pass is
checked against an independent numpy implementation of Caffe's layer semantics (explicit loops
over windows, written from Caffe's C++ rules, float64).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf", reason="the 'caffe' extra (protobuf) is not installed")

from google.protobuf import text_format  # noqa: E402

from bench.models.caffe import (  # noqa: E402
    CaffeFormatError,
    convert_caffe,
    find_cam_head,
    load_caffe,
    load_converted,
    pool_output_size,
    read_caffemodel,
    read_prototxt,
)
from bench.models.caffe import schema  # noqa: E402
from bench.models.caffe.arch import infer_shapes  # noqa: E402

# --------------------------------------------------------------------------- numpy reference


def ref_conv(x, w, b, stride, pad, group):
    """Caffe convolution, direct loops over output pixels (x: (C, H, W); w: (O, C/g, kh, kw))."""
    c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * pad, wd + 2 * pad))
    xp[:, pad : pad + h, pad : pad + wd] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    og = o // group
    y = np.zeros((o, oh, ow))
    for g in range(group):
        for i in range(oh):
            for j in range(ow):
                patch = xp[g * cg : (g + 1) * cg, i * stride : i * stride + kh, j * stride : j * stride + kw]
                y[g * og : (g + 1) * og, i, j] = np.tensordot(w[g * og : (g + 1) * og], patch, axes=3)
    return y + (0 if b is None else b[:, None, None])


def ref_pool(x, method, k, s, p, global_pooling=False):
    """Caffe PoolingLayer::Reshape + Forward_cpu, transcribed: window start/end, clipping, divisor."""
    c, h, w = x.shape
    (kh, kw), (sh, sw), (padh, padw) = (k, k), (s, s), (p, p)
    if global_pooling:
        (kh, kw), (sh, sw), (padh, padw) = (h, w), (1, 1), (0, 0)
    ph = int(math.ceil((h + 2 * padh - kh) / sh)) + 1
    pw = int(math.ceil((w + 2 * padw - kw) / sw)) + 1
    if padh or padw:
        if (ph - 1) * sh >= h + padh:
            ph -= 1
        if (pw - 1) * sw >= w + padw:
            pw -= 1
    y = np.zeros((c, ph, pw))
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * sh - padh, j * sw - padw
            he, we = min(hs + kh, h + padh), min(ws + kw, w + padw)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, hs:he, ws:we]
            if method == "MAX":
                y[:, i, j] = win.max(axis=(1, 2))
            else:
                y[:, i, j] = win.sum(axis=(1, 2)) / size
    return y


def ref_lrn(x, n, alpha, beta, k):
    c = x.shape[0]
    y = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - (n - 1) // 2), min(c, ch + (n - 1) // 2 + 1)
        y[ch] = x[ch] * (k + alpha / n * (x[lo:hi] ** 2).sum(axis=0)) ** (-beta)
    return y


def ref_layer(L, weights, ins):
    """One layer of the test's own layer description (see NET_A / NET_B), float64."""
    t, name = L["type"], L["name"]
    if t == "Convolution":
        w, b = weights[name]
        return ref_conv(ins[0], w, b, L.get("stride", 1), L.get("pad", 0), L.get("group", 1))
    if t == "Pooling":
        return ref_pool(ins[0], L["pool"], L.get("kernel", 0), L.get("stride", 1), L.get("pad", 0), L.get("global", False))
    if t == "LRN":
        return ref_lrn(ins[0], L["local_size"], L["alpha"], L["beta"], 1.0)
    if t == "ReLU":
        return np.maximum(ins[0], 0)
    if t == "Dropout":
        return ins[0]
    if t == "Concat":
        return np.concatenate(ins, axis=0)
    if t == "InnerProduct":
        w, b = weights[name]
        return w @ ins[0].reshape(-1) + b
    raise AssertionError(t)


def ref_forward(layers, weights, x, keep=None):
    """Scores (the final Softmax skipped) of one image ``x (C, H, W)``; optionally a blob's value too."""
    blobs = {"data": x}
    kept = None
    for L in layers:
        if L["type"] == "Softmax":
            continue
        ins = [blobs[b] for b in L["bottom"]]
        if keep is not None and L["name"] == keep:
            kept = ins[0]
        y = ref_layer(L, weights, ins)
        blobs[L["top"]] = y
    return (y, kept) if keep is not None else y


# --------------------------------------------------------------------------- tiny nets
# Each layer: the test's plain description; writers turn it into either dialect.

# Old dialect (V1 `layers { type: CONVOLUTION }`), AlexNet-like, 2 x 3 x 19 x 19.
NET_A_INPUT = (3, 19, 19)
NET_A = [
    dict(name="conv1", type="Convolution", bottom=["data"], top="conv1", num_output=8, kernel=5, stride=2),  # 8x8
    dict(name="relu1", type="ReLU", bottom=["conv1"], top="conv1"),  # in place
    dict(name="norm1", type="LRN", bottom=["conv1"], top="norm1", local_size=5, alpha=0.375, beta=0.75),
    dict(name="pool1", type="Pooling", bottom=["norm1"], top="pool1", pool="MAX", kernel=3, stride=2),  # ceil 4 != floor 3
    dict(name="conv2", type="Convolution", bottom=["pool1"], top="conv2", num_output=12, kernel=3, pad=1, group=2),
    dict(name="relu2", type="ReLU", bottom=["conv2"], top="conv2"),
    dict(name="pool2", type="Pooling", bottom=["conv2"], top="pool2", pool="AVE", kernel=3, stride=2, pad=1),  # 3x3, clipped divisor
    dict(name="CAM_conv", type="Convolution", bottom=["pool2"], top="CAM_conv", num_output=6, kernel=3, pad=1, group=3),
    dict(name="CAM_relu", type="ReLU", bottom=["CAM_conv"], top="CAM_conv"),
    dict(name="CAM_pool", type="Pooling", bottom=["CAM_conv"], top="CAM_pool", pool="AVE", kernel=3, stride=3),  # kernel-sized
    dict(name="CAM_drop", type="Dropout", bottom=["CAM_pool"], top="CAM_pool"),
    dict(name="fc", type="InnerProduct", bottom=["CAM_pool"], top="fc", num_output=5),
    dict(name="prob", type="Softmax", bottom=["fc"], top="prob"),
]

# New dialect (`layer { type: "Convolution" }`), inception-style concat, 2 x 3 x 12 x 12.
NET_B_INPUT = (3, 12, 12)
NET_B = [
    dict(name="conv1/3x3", type="Convolution", bottom=["data"], top="conv1", num_output=6, kernel=3, pad=1),
    dict(name="relu1", type="ReLU", bottom=["conv1"], top="conv1"),
    dict(name="pool1", type="Pooling", bottom=["conv1"], top="pool1", pool="MAX", kernel=3, stride=2),  # ceil 6 != floor 5
    dict(name="norm1", type="LRN", bottom=["pool1"], top="norm1", local_size=3, alpha=0.5, beta=0.625),
    dict(name="inc/1x1", type="Convolution", bottom=["norm1"], top="inc/1x1", num_output=4, kernel=1),
    dict(name="inc/3x3_reduce", type="Convolution", bottom=["norm1"], top="inc/3x3_reduce", num_output=3, kernel=1),
    dict(name="inc/relu_reduce", type="ReLU", bottom=["inc/3x3_reduce"], top="inc/3x3_reduce"),
    dict(name="inc/3x3", type="Convolution", bottom=["inc/3x3_reduce"], top="inc/3x3", num_output=5, kernel=3, pad=1),
    dict(name="inc/pool", type="Pooling", bottom=["norm1"], top="inc/pool", pool="MAX", kernel=3, stride=1, pad=1),
    dict(name="inc/pool_proj", type="Convolution", bottom=["inc/pool"], top="inc/pool_proj", num_output=2, kernel=1),
    dict(name="inc/output", type="Concat", bottom=["inc/1x1", "inc/3x3", "inc/pool_proj"], top="inc/output"),
    dict(name="pre", type="Convolution", bottom=["inc/output"], top="pre", num_output=8, kernel=2),  # 5x5
    dict(name="pre_relu", type="ReLU", bottom=["pre"], top="pre"),
    dict(name="pool2", type="Pooling", bottom=["pre"], top="pool2", pool="MAX", kernel=2, stride=2, pad=1),  # 5 -> 3: ceil gives 4, the 4th window starts at H + p: dropped
    dict(name="pool2b", type="Pooling", bottom=["pool2"], top="pool2b", pool="AVE", kernel=2, stride=2, pad=1),  # 3 -> 2, the same rule (AVE)
    dict(name="CAM_conv", type="Convolution", bottom=["pool2b"], top="CAM_conv", num_output=6, kernel=3, pad=1, group=2),
    dict(name="CAM_relu", type="ReLU", bottom=["CAM_conv"], top="CAM_conv"),
    dict(name="gap", type="Pooling", bottom=["CAM_conv"], top="gap", pool="AVE", **{"global": True}),
    dict(name="fc", type="InnerProduct", bottom=["gap"], top="fc", num_output=5),
    dict(name="prob", type="Softmax", bottom=["fc"], top="prob"),
]
_V1_TYPES = {"Convolution": 4, "Pooling": 17, "LRN": 15, "ReLU": 18, "Dropout": 6, "Concat": 3, "InnerProduct": 14, "Softmax": 20}


def _fill_params(msg, L):
    t = L["type"]
    if t == "Convolution":
        p = msg.convolution_param
        p.num_output = L["num_output"]
        p.kernel_size.append(L["kernel"])
        if L.get("stride", 1) != 1:
            p.stride.append(L["stride"])
        if L.get("pad", 0):
            p.pad.append(L["pad"])
        if L.get("group", 1) != 1:
            p.group = L["group"]
        p.weight_filler.type = "gaussian"  # ignored (weights come from the caffemodel)
    elif t == "Pooling":
        p = msg.pooling_param
        p.pool = {"MAX": 0, "AVE": 1}[L["pool"]]
        if L.get("global"):
            p.global_pooling = True
        else:
            p.kernel_size = L["kernel"]
            p.stride = L.get("stride", 1)
            if L.get("pad", 0):
                p.pad = L["pad"]
    elif t == "LRN":
        p = msg.lrn_param
        p.local_size, p.alpha, p.beta = L["local_size"], L["alpha"], L["beta"]
    elif t == "InnerProduct":
        msg.inner_product_param.num_output = L["num_output"]
    elif t == "Dropout":
        msg.dropout_param.dropout_ratio = 0.5


def _random_weights(layers, input_shape, seed):
    """Random weights per conv / inner-product layer, shapes taken from a reference pass on zeros.

    Values are rounded to float32 (what a caffemodel stores), held as float64.
    """
    rng = np.random.default_rng(seed)
    blobs = {"data": np.zeros(input_shape)}
    weights = {}
    for L in layers:
        if L["type"] == "Softmax":
            continue
        ins = [blobs[b] for b in L["bottom"]]
        if L["type"] == "Convolution":
            cin = ins[0].shape[0] // L.get("group", 1)
            weights[L["name"]] = (
                rng.normal(0, 0.5, (L["num_output"], cin, L["kernel"], L["kernel"])),
                rng.normal(0, 0.2, L["num_output"]),
            )
        elif L["type"] == "InnerProduct":
            weights[L["name"]] = (rng.normal(0, 0.5, (L["num_output"], ins[0].size)), rng.normal(0, 0.2, L["num_output"]))
        if L["name"] in weights:
            weights[L["name"]] = tuple(a.astype(np.float32).astype(np.float64) for a in weights[L["name"]])
        blobs[L["top"]] = ref_layer(L, weights, ins)
    return weights


# --------------------------------------------------------------------------- writers (both dialects)


def _blob(msg, arr, legacy):
    arr = np.asarray(arr, dtype=np.float32)
    if legacy:
        dims = (1,) * (4 - arr.ndim) + arr.shape
        msg.num, msg.channels, msg.height, msg.width = dims
    else:
        msg.shape.dim.extend(arr.shape)
    msg.data.extend(arr.reshape(-1).tolist())


def write_net(tmp_path, layers, input_shape, weights, dialect, stem="net"):
    """Write ``stem.prototxt`` + ``stem.caffemodel``; V1 uses legacy 4-D blob dims, V2 blob shapes."""
    deploy, model = schema.NetParameter(name=stem), schema.NetParameter(name=stem)
    deploy.input.append("data")
    if dialect == "v1":
        deploy.input_dim.extend((10, *input_shape))
    else:
        deploy.input_shape.add().dim.extend((10, *input_shape))
    for L in layers:
        for net, with_blobs in ((deploy, False), (model, True)):
            if dialect == "v1":
                msg = net.layers.add(name=L["name"], type=_V1_TYPES[L["type"]])
            else:
                msg = net.layer.add(name=L["name"], type=L["type"])
            msg.bottom.extend(L["bottom"])
            msg.top.append(L["top"])
            _fill_params(msg, L)
            if with_blobs and L["name"] in weights:
                for arr in weights[L["name"]]:
                    _blob(msg.blobs.add(), arr, legacy=dialect == "v1")
    proto, caffemodel = tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"
    proto.write_text(text_format.MessageToString(deploy))
    caffemodel.write_bytes(model.SerializeToString())
    return proto, caffemodel


NETS = {"v1": (NET_A, NET_A_INPUT), "v2": (NET_B, NET_B_INPUT)}


@pytest.fixture(params=["v1", "v2"])
def tiny(request, tmp_path):
    layers, shape = NETS[request.param]
    weights = _random_weights(layers, shape, seed=1 if request.param == "v1" else 2)
    proto, model = write_net(tmp_path, layers, shape, weights, request.param)
    x = np.random.default_rng(3).normal(0, 1, (2, *shape))
    return request.param, layers, weights, proto, model, x


# --------------------------------------------------------------------------- schema


def test_schema_field_numbers_read_hand_encoded_bytes():
    """Wire bytes written by hand from caffe.proto's numbers decode to the right fields."""

    def ld(field, payload):  # length-delimited field
        return bytes([(field << 3) | 2, len(payload)]) + payload

    floats = np.array([1.5, -2.0], dtype="<f4").tobytes()
    shape = ld(1, bytes([2, 1]))  # BlobShape.dim = 1 (packed varints 2, 1)
    blob_new = ld(7, shape) + ld(5, floats)  # BlobProto.shape = 7, data = 5
    blob_old = bytes([0x08, 1, 0x10, 1, 0x18, 1, 0x20, 2]) + ld(5, floats)  # num=1 channels=2 height=3 width=4
    conv = bytes([0x08, 7]) + bytes([0x28, 2])  # ConvolutionParameter.num_output = 1, group = 5
    v1 = ld(4, b"c1") + bytes([0x28, 4]) + ld(6, blob_old) + ld(10, conv)  # V1: name=4 type=5 blobs=6 convolution_param=10
    new = ld(1, b"c2") + ld(2, b"Convolution") + ld(7, blob_new)  # LayerParameter: name=1 type=2 blobs=7
    new_conv = bytes([0xD2, 0x06, len(conv)]) + conv  # convolution_param = 106 (tag 106<<3|2 = 850 = 0xD2 0x06)
    net_bytes = ld(1, b"n") + ld(2, v1) + bytes([0xA2, 0x06, len(new + new_conv)]) + new + new_conv  # name=1 layers=2 layer=100
    net = schema.NetParameter()
    net.ParseFromString(net_bytes)
    assert net.name == "n"
    (old,) = net.layers
    assert (old.name, old.type, old.convolution_param.num_output, old.convolution_param.group) == ("c1", 4, 7, 2)
    assert (old.blobs[0].num, old.blobs[0].channels, old.blobs[0].height, old.blobs[0].width) == (1, 1, 1, 2)
    (layer,) = net.layer
    assert (layer.name, layer.type, list(layer.blobs[0].shape.dim)) == ("c2", "Convolution", [2, 1])
    assert list(layer.blobs[0].data) == [1.5, -2.0]
    assert layer.convolution_param.num_output == 7
    # input=3 input_dim=4 input_shape=8; V1 LayerType names
    net2 = schema.NetParameter()
    net2.ParseFromString(ld(3, b"data") + bytes([0x20, 10, 0x20, 3]) + ld(8, ld(1, bytes([1, 3]))))
    assert list(net2.input) == ["data"] and list(net2.input_dim) == [10, 3] and list(net2.input_shape[0].dim) == [1, 3]
    names = schema.V1LayerParameter.LayerType
    assert [names.Value(n) for n in ("CONVOLUTION", "POOLING", "LRN", "INNER_PRODUCT", "CONCAT", "RELU", "DROPOUT", "SOFTMAX")] == [
        4, 17, 15, 14, 3, 18, 6, 20
    ]


def test_pool_output_size_caffe_rule():
    # ceil mode: (8 - 3) / 2 = 2.5 -> 4 windows (floor would give 3)
    assert pool_output_size(8, 3, 2, 0) == 4
    # with padding the last window starting at or past H + p is dropped: ceil((3+2-2)/2)+1 = 3 -> 2
    assert pool_output_size(3, 2, 2, 1) == 2
    assert pool_output_size(5, 2, 2, 1) == 3
    # AlexNet pool1 on 55 and GoogLeNet's 112 -> 56
    assert pool_output_size(55, 3, 2, 0) == 27
    assert pool_output_size(112, 3, 2, 0) == 56
    assert pool_output_size(8, 3, 2, 0, "FLOOR") == 3


# --------------------------------------------------------------------------- forward vs reference


def test_forward_matches_numpy_reference(tiny):
    dialect, layers, weights, proto, model, x = tiny
    net = load_caffe(proto, model)
    want = np.stack([ref_forward(layers, weights, xi) for xi in x])
    with torch.no_grad():
        got64 = net.double()(torch.from_numpy(x)).numpy()
        got32 = net.float()(torch.from_numpy(x).float()).double().numpy()
    scale = np.abs(want).max()
    # float64: only summation order differs from the loops
    np.testing.assert_allclose(got64, want, rtol=0, atol=1e-10 * scale)
    # float32: < 1e-5 relative to the largest score (a few hundred float32 roundings of O(scale) values)
    np.testing.assert_allclose(got32, want, rtol=0, atol=1e-5 * scale)
    # the nets were built so that each rule matters: ceil != floor, a clipped AVE divisor, dropped window
    shapes = {s["name"]: s["output"] for s in infer_shapes(net.arch)}
    if dialect == "v1":
        assert shapes["pool1"] == [8, 4, 4] and shapes["pool2"] == [12, 3, 3] and shapes["CAM_pool"] == [6, 1, 1]
    else:
        assert shapes["pool1"] == [6, 6, 6] and shapes["pool2"] == [8, 3, 3] and shapes["pool2b"] == [8, 2, 2]
        assert shapes["inc/output"] == [11, 6, 6]


@settings(max_examples=150, deadline=None)
@given(
    h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 3),
    method=st.sampled_from(["MAX", "AVE"]), glob=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_pooling_matches_caffe_loops(h, w, k, s, p, method, glob, seed):
    """caffe_pool2d == Caffe's window loops for every small geometry Caffe accepts."""
    from bench.models.caffe.net import caffe_pool2d

    if not glob:
        assume(p < k and k <= h + 2 * p and k <= w + 2 * p)
        # Caffe leaves a window fully outside the image when k < s (divide by zero): we refuse those
        for size in (h, w):
            n = pool_output_size(size, k, s, p)
            assume((n - 1) * s - p < size)
    x = np.random.default_rng(seed).normal(size=(2, h, w))
    want = ref_pool(x, method, k, s, p, global_pooling=glob)
    if glob:
        got = caffe_pool2d(torch.from_numpy(x)[None], method, (0, 0), (1, 1), (0, 0), global_pooling=True)[0]
    else:
        got = caffe_pool2d(torch.from_numpy(x)[None], method, (k, k), (s, s), (p, p))[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1, 3, 5])
def test_lrn_matches_loops_and_torch(n):
    from bench.models.caffe.net import caffe_lrn

    x = np.random.default_rng(n).normal(size=(7, 3, 4))
    want = ref_lrn(x, n, 0.4, 0.75, 2.0)
    got = caffe_lrn(torch.from_numpy(x)[None], n, 0.4, 0.75, 2.0)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    # PyTorch's LocalResponseNorm divides alpha by n too: the same map for odd n
    tv = torch.nn.LocalResponseNorm(n, alpha=0.4, beta=0.75, k=2.0)(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(tv, want, rtol=1e-12, atol=0)


def test_train_val_file_uses_test_phase(tmp_path):
    """Data layers (TRAIN/TEST), accuracy and loss skipped; a TRAIN-only layer dropped; same scores."""
    weights = _random_weights(NET_B, NET_B_INPUT, seed=5)
    proto, model = write_net(tmp_path, NET_B, NET_B_INPUT, weights, "v2")
    deploy = read_prototxt(proto)
    tv = schema.NetParameter(name="tv")
    for phase, crop in ((0, 99), (1, NET_B_INPUT[1])):
        data = tv.layer.add(name="data", type="Data")
        data.top.extend(["data", "label"])
        data.include.add(phase=phase)
        data.transform_param.crop_size = crop
        data.transform_param.mean_value.extend([104, 117, 123])
        data.data_param.source = "lmdb"
        data.data_param.batch_size = 4
    for layer in deploy.layer:
        if layer.type == "Softmax":
            continue
        tv.layer.add().CopyFrom(layer)
        if layer.name == "pre_relu":  # a layer that only exists in training
            extra = tv.layer.add(name="train_only", type="Dropout")
            extra.bottom.append("pre")
            extra.top.append("pre")
            extra.exclude.add(phase=1)
            extra.param.add(lr_mult=1)
    loss = tv.layer.add(name="loss", type="SoftmaxWithLoss")
    loss.bottom.extend(["fc", "label"])
    loss.top.append("loss")
    acc = tv.layer.add(name="acc", type="Accuracy")
    acc.bottom.extend(["fc", "label"])
    acc.top.append("acc")
    acc.include.add(phase=1)
    acc.accuracy_param.top_k = 5
    tv_path = tmp_path / "train_val.prototxt"
    tv_path.write_text(text_format.MessageToString(tv))
    a, b = load_caffe(proto, model), load_caffe(tv_path, model)
    assert b.arch["input"] == {"name": "data", "shape": list(NET_B_INPUT)}
    assert "train_only" not in [e["name"] for e in b.arch["layers"]]
    x = torch.randn(2, *NET_B_INPUT)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- errors


def _edit_prototxt(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text()
    assert old in text
    dst.write_text(text.replace(old, new, 1))
    return dst


def test_unknown_layer_type_names_the_layer(tmp_path):
    weights = _random_weights(NET_B, NET_B_INPUT, seed=2)
    proto, model = write_net(tmp_path, NET_B, NET_B_INPUT, weights, "v2")
    bad = _edit_prototxt(proto, tmp_path / "bad.prototxt", 'type: "LRN"', 'type: "BatchNorm"')
    with pytest.raises(CaffeFormatError, match=r"layer 'norm1' \(BatchNorm\): unsupported layer type 'BatchNorm'"):
        load_caffe(bad, model)
    weights_a = _random_weights(NET_A, NET_A_INPUT, seed=1)
    proto_a, model_a = write_net(tmp_path, NET_A, NET_A_INPUT, weights_a, "v1", stem="a")
    bad_a = _edit_prototxt(proto_a, tmp_path / "bad_a.prototxt", "type: LRN", "type: TANH")
    with pytest.raises(CaffeFormatError, match=r"layer 'norm1' \(TANH\)"):
        load_caffe(bad_a, model_a)


def test_weight_problems_name_the_layer(tmp_path):
    weights = _random_weights(NET_A, NET_A_INPUT, seed=1)
    proto, model = write_net(tmp_path, NET_A, NET_A_INPUT, weights, "v1")
    wider = _edit_prototxt(proto, tmp_path / "wider.prototxt", "num_output: 12", "num_output: 18")
    with pytest.raises(CaffeFormatError, match=r"layer 'conv2' weight has shape \(12, 4, 3, 3\), the prototxt needs \(18, 4, 3, 3\)"):
        load_caffe(wider, model)
    renamed = _edit_prototxt(proto, tmp_path / "renamed.prototxt", 'name: "conv2"', 'name: "conv2_new"')
    with pytest.raises(CaffeFormatError, match=r"no weights for layer 'conv2_new'"):
        load_caffe(renamed, model)
    with pytest.raises(CaffeFormatError, match="not a binary Caffe model|holds no layers"):
        read_caffemodel(proto)
    with pytest.raises(CaffeFormatError, match="not a Caffe network description"):
        read_prototxt(_edit_prototxt(proto, tmp_path / "typo.prototxt", "kernel_size", "kernal_size"))


# --------------------------------------------------------------------------- convert, BenchModel, CAM


def test_convert_round_trip_and_weights_only(tiny, tmp_path):
    dialect, layers, weights, proto, model, x = tiny
    out = convert_caffe(proto, model, tmp_path / "conv" / "net.pt", paper_name="VGGnet-GAP")
    payload = torch.load(out, weights_only=True)
    assert payload["format"] == "bench-caffe-net" and payload["meta"]["paper_name"] == "VGGnet-GAP"
    a = load_caffe(proto, model)
    b, meta = load_converted(out)
    assert meta["caffemodel"] == model.name
    xt = torch.from_numpy(x).float()
    with torch.no_grad():
        assert torch.equal(a(xt), b(xt))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_bench_model_cam_identity_and_preprocessing(tiny, tmp_path):
    from bench.models import build_model
    from bench.models.caffe import CAFFE_MEAN_BGR

    dialect, layers, weights, proto, model, x = tiny
    bench_model, info = build_model(str(proto), weights=model)
    assert info.source == "file" and info.path == str(model.resolve())
    spec = bench_model.spec
    assert spec.head == "gap" and spec.input_size == (NET_A_INPUT if dialect == "v1" else NET_B_INPUT)[1]
    # harness input: (rgb01 - mean) / std with the spec's mean/std == 255 rgb - mean_rgb
    rgb01 = torch.rand(2, 3, spec.input_size, spec.input_size, dtype=torch.float64)
    mean, std = torch.tensor(spec.mean, dtype=torch.float64), torch.tensor(spec.std, dtype=torch.float64)
    normed = (rgb01 - mean[:, None, None]) / std[:, None, None]
    bgr = (255 * rgb01).flip(1) - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)[:, None, None]
    bench_model = bench_model.double()
    with torch.no_grad():
        logits, features = bench_model(normed)
    want = np.stack([ref_forward(layers, weights, xi) for xi in bgr.numpy()])
    np.testing.assert_allclose(logits.numpy(), want, rtol=0, atol=1e-9 * np.abs(want).max())
    # features: the input of the CAM pooling (after the in-place CAM ReLU)
    pool_name = "CAM_pool" if dialect == "v1" else "gap"
    ref_feat = np.stack([ref_forward(layers, weights, xi, keep=pool_name)[1] for xi in bgr.numpy()])
    np.testing.assert_allclose(features.numpy(), ref_feat, rtol=0, atol=1e-9 * np.abs(ref_feat).max())
    assert features.shape[-1] == spec.grid
    # CAM identity: mean of (CAM + bias) over the map == logit, for every class
    w, b = bench_model.classifier()
    cams = torch.einsum("bkhw,ck->bchw", features, w) + b[None, :, None, None]
    torch.testing.assert_close(cams.mean((2, 3)), logits, rtol=1e-12, atol=1e-12)
    assert bench_model.num_classes == 5


def test_caffe_model_string_from_converted_file(tiny, tmp_path):
    from bench.models import WeightsError, build_model

    dialect, layers, weights, proto, model, x = tiny
    out = convert_caffe(proto, model, tmp_path / "vgg16CAM_train_iter_90000.pt")
    m, info = build_model(f"caffe:{out}")
    assert m.spec.name == "vgg16CAM_train_iter_90000" and info.path == str(out.resolve())
    assert m.spec.paper_name is None  # guessed from the source file names (net.prototxt / net.caffemodel)
    direct, _ = build_model(str(proto), weights=model)
    xt = torch.randn(1, 3, m.spec.input_size, m.spec.input_size)
    with torch.no_grad():
        assert torch.equal(m(xt)[0], direct(xt)[0])
    with pytest.raises(WeightsError, match="needs its weights"):
        build_model(str(proto))
    with pytest.raises(WeightsError, match="holds its weights"):
        build_model(f"caffe:{out}", weights=model)
    with pytest.raises(FileNotFoundError):
        build_model(f"caffe:{tmp_path / 'missing.pt'}")


def test_cam_head_requires_whole_map_average(tmp_path):
    """A MAX pool (or an AVE pool smaller than the map) before the last InnerProduct is no GAP head."""
    layers = [dict(L) for L in NET_A]
    for L in layers:
        if L["name"] == "CAM_pool":
            L["pool"] = "MAX"
    weights = _random_weights(layers, NET_A_INPUT, seed=1)
    proto, model = write_net(tmp_path, layers, NET_A_INPUT, weights, "v1")
    net = load_caffe(proto, model)
    assert find_cam_head(net.arch) is None
    from bench.models import CamNotApplicable, build_model

    m, _ = build_model(str(proto), weights=model)
    assert m.spec.head == "fc" and m(torch.zeros(1, 3, 19, 19))[1] is None
    with pytest.raises(CamNotApplicable):
        m.classifier()


# --------------------------------------------------------------------------- the authors' real files

_REAL = {
    # prototxt, caffemodel, input size, CAM feature map (C, h, w)
    "vgg16": ("deploy_vgg16CAM.prototxt", "vgg16CAM_train_iter_90000.caffemodel", 224, [1024, 14, 14]),
    "googlenet": ("train_val_googlenetCAM.prototxt", "imagenet_googlenetCAM_train_iter_120000.caffemodel", 224, [1024, 14, 14]),
    "alexnetplus": ("deploy_alexnetplusCAM_imagenet.prototxt", "alexnetplusCAM_imagenet.caffemodel", 227, [512, 11, 11]),
}


@pytest.mark.parametrize("which", sorted(_REAL))
def test_real_models_layer_shapes(which):
    root = os.environ.get("BENCH_CAFFE_DIR")
    if not root:
        pytest.skip("set BENCH_CAFFE_DIR to a folder holding the CAM release's prototxt and caffemodel files")
    proto_name, model_name, size, cam_shape = _REAL[which]
    proto, model = Path(root) / proto_name, Path(root) / model_name
    if not (proto.is_file() and model.is_file()):
        pytest.skip(f"{proto_name} / {model_name} not in BENCH_CAFFE_DIR={root}")
    net = load_caffe(proto, model)  # loading checks every weight's shape against the prototxt
    assert net.arch["input"]["shape"] == [3, size, size]
    head = find_cam_head(net.arch)
    assert head is not None
    shapes = infer_shapes(net.arch)
    assert shapes[head[0]]["inputs"][0] == cam_shape
    assert shapes[-1]["output"] == [1000]
    with torch.no_grad():
        out, feat = net.forward_blobs(torch.zeros(1, 3, size, size), capture=head[0])
    assert list(out.shape) == [1, 1000] and list(feat.shape[1:]) == cam_shape


# --------------------------------------------------------------------------- MATLAB imresize


def test_matlab_imresize_hand_values():
    from bench.models.caffe.matlab_resize import imresize_matrix

    # bilinear 2 -> 4 (u = x/2 + 1/4; the left tap mirrors onto pixel 1): [0, .25, .75, 1]
    np.testing.assert_allclose(imresize_matrix(2, 4, "bilinear") @ [0.0, 1.0], [0, 0.25, 0.75, 1], atol=1e-15)
    # bilinear 4 -> 2 with antialiasing: triangle stretched x2, taps .125 .375 .375 .125, the
    # first one mirrored onto pixel 1
    np.testing.assert_allclose(imresize_matrix(4, 2, "bilinear")[0], [0.5, 0.375, 0.125, 0], atol=1e-15)
    np.testing.assert_allclose(imresize_matrix(4, 2, "bilinear", antialias=False)[0], [0.5, 0.5, 0, 0], atol=1e-15)
    # bicubic x2 (a = -0.5): output 2 sits at u = 1.25: taps at 0 (mirror of 1), 1, 2, 3 with
    # Keys weights k(1.25), k(.25), k(.75), k(1.75)
    def keys(t):
        t = abs(t)
        return 1.5 * t**3 - 2.5 * t**2 + 1 if t <= 1 else -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2 if t <= 2 else 0.0

    row = imresize_matrix(4, 8, "bicubic")[1]
    w = [keys(1.25), keys(0.25), keys(0.75), keys(1.75)]
    np.testing.assert_allclose(row, [w[0] + w[1], w[2], w[3], 0], atol=1e-15)
    for n_in, n_out in ((14, 224), (256, 500), (256, 120), (7, 7)):
        m = imresize_matrix(n_in, n_out, "bicubic")
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)  # constants are kept
    np.testing.assert_array_equal(imresize_matrix(9, 9, "bicubic"), np.eye(9))


# --------------------------------------------------------------------------- ten crops


def test_crop_offsets_follow_matlab_loops():
    from bench.models.caffe.tencrop import crop_offsets

    # prepare_image.m: for i (x) in [1, a+1], for j (y) in [1, a+1]; centre floor((256-c+1)/2)+1 (1-based)
    assert crop_offsets(224) == [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]
    assert crop_offsets(227) == [(0, 0), (29, 0), (0, 29), (29, 29), (15, 15)]


def test_ten_crops_positions_and_flips():
    from bench.models.caffe.tencrop import ten_crops

    yy, xx = np.mgrid[0:256, 0:256]
    frame = torch.from_numpy(np.stack([1000.0 * yy + xx] * 3))
    crops = ten_crops(frame, 224)
    assert crops.shape == (10, 3, 224, 224)
    corners = [(0, 0), (32, 0), (0, 32), (32, 32), (16, 16)]
    for n, (y, x) in enumerate(corners):
        assert crops[n, 0, 0, 0] == 1000 * y + x and crops[n, 0, 223, 223] == 1000 * (y + 223) + x + 223
        # flipped copy: its first column is the crop's last column
        assert crops[n + 5, 0, 0, 0] == 1000 * y + x + 223 and crops[n + 5, 0, 5, 223] == 1000 * (y + 5) + x


def test_merge_ten_crops_aligns_hand_built_cams():
    from bench.models.caffe.tencrop import merge_ten_crops, ten_crops

    # CAMs cut from one frame F (crops, then flipped crops) must merge back onto F, times how
    # many crops cover each pixel (twice each crop: itself and its flip), signs dropped by |.|
    rng = np.random.default_rng(0)
    F = rng.normal(size=(256, 256))
    cams = ten_crops(torch.from_numpy(F)[None], 227)[:, 0]
    merged = merge_ten_crops(cams).numpy()
    cover = np.zeros((256, 256))
    for y, x in [(0, 0), (29, 0), (0, 29), (29, 29), (15, 15)]:
        cover[y : y + 227, x : x + 227] += 2
    np.testing.assert_allclose(merged, np.abs(F) * cover, rtol=1e-15)
    # one hot pixel in the flipped bottom-left crop (number 7): crop pixel (0, 0) is, unflipped,
    # the crop's last column: frame (y = 29, x = 0 + 226)
    one = torch.zeros(10, 227, 227, dtype=torch.float64)
    one[6, 0, 0] = -2.0
    hit = np.argwhere(merge_ten_crops(one).numpy())
    assert hit.tolist() == [[29, 226]] and merge_ten_crops(one)[29, 226] == 2.0


def test_prepare_image_bgr_and_mean(tmp_path):
    from scipy.io import savemat

    from bench.models.caffe.tencrop import load_mean_image, prepare_image

    img = np.empty((300, 170, 3), dtype=np.uint8)
    img[...] = (200, 100, 50)  # R, G, B
    frame = prepare_image(img)
    assert frame.shape == (3, 256, 256) and frame.dtype == torch.float32
    want = np.array([50 - 104.007, 100 - 116.669, 200 - 122.679], dtype=np.float32)
    np.testing.assert_allclose(frame.numpy()[:, 10, 20], want, rtol=0, atol=2e-5)
    np.testing.assert_allclose(frame.numpy().std(axis=(1, 2)), 0, atol=2e-5)
    # the release's .mat mean is W x H x C (BGR): element [x, y, c] belongs to row y, column x
    mean_whc = np.zeros((256, 256, 3), dtype=np.float32)
    mean_whc[7, 3, 0] = 9.0  # x = 7, y = 3, channel B
    savemat(tmp_path / "mean.mat", {"mean_data": mean_whc})
    mean = load_mean_image(tmp_path / "mean.mat")
    assert mean.shape == (3, 256, 256) and mean[0, 3, 7] == 9.0 and mean.sum() == 9.0
    np.save(tmp_path / "mean.npy", mean)
    np.testing.assert_array_equal(load_mean_image(tmp_path / "mean.npy"), mean)
    blob = schema.BlobProto(num=1, channels=3, height=256, width=256)
    blob.data.extend(mean.reshape(-1).tolist())
    (tmp_path / "mean.binaryproto").write_bytes(blob.SerializeToString())
    np.testing.assert_array_equal(load_mean_image(tmp_path / "mean.binaryproto"), mean)
    with_mean = prepare_image(img, mean)
    assert with_mean[0, 3, 7] == pytest.approx(50 - 9.0, abs=2e-5) and with_mean[1, 3, 7] == pytest.approx(100, abs=2e-5)


def test_tencrop_maps_against_a_crop_by_crop_reference(tmp_path):
    """Scores = mean softmax over the ten crops; maps = |CAM| of each crop placed by hand, summed."""
    from bench.models.caffe.matlab_resize import imresize
    from bench.models.caffe.tencrop import prepare_image, tencrop_maps

    weights = _random_weights(NET_B, NET_B_INPUT, seed=4)
    proto, model = write_net(tmp_path, NET_B, NET_B_INPUT, weights, "v2")
    net = load_caffe(proto, model)
    image = np.random.default_rng(1).integers(0, 256, size=(40, 57, 3), dtype=np.uint8)
    res = tencrop_maps(net, image, extra_classes=(3,))
    assert res.maps.shape == (6, 40, 57) and res.map_classes[-1] == 3
    frame = prepare_image(image).double().numpy()
    c, a = 12, 256 - 12
    placed = [(0, 0), (0, a), (a, 0), (a, a), ((a + 1) // 2, (a + 1) // 2)]  # MATLAB (x, y) loop order
    probs, per_crop = [], []
    for flip in (False, True):
        for x0, y0 in placed:
            crop = frame[:, y0 : y0 + c, x0 : x0 + c]
            crop = crop[:, :, ::-1] if flip else crop
            scores, feat = ref_forward(NET_B, weights, crop, keep="gap")
            p = np.exp(scores - scores.max())
            probs.append(p / p.sum())
            per_crop.append((x0, y0, flip, feat))
    mean_p = np.mean(probs, axis=0)
    order = np.argsort(-mean_p, kind="stable")[:5]
    np.testing.assert_array_equal(res.top_classes, order)
    np.testing.assert_allclose(res.top_scores, mean_p[order], rtol=1e-5)
    w_fc = weights["fc"][0]
    for m, cls in enumerate(res.map_classes):
        acc = np.zeros((256, 256))
        for x0, y0, flip, feat in per_crop:
            cam = np.tensordot(w_fc[cls], feat, axes=1)
            up = imresize(torch.from_numpy(cam), (c, c), "bicubic").numpy()
            acc[y0 : y0 + c, x0 : x0 + c] += np.abs(up[:, ::-1] if flip else up)
        full = imresize(torch.from_numpy(acc), (40, 57), "bicubic").numpy()
        np.testing.assert_allclose(res.maps[m], full / full.max(), rtol=0, atol=2e-5)


def test_release_boxes_from_gray_equals_cam_release_and_jpeg_option():
    from scipy import ndimage

    from bench.models.caffe.tencrop import jpeg_roundtrip, release_boxes_from_gray, tencrop_release_boxes
    from bench.core.release_boxes import cam_release_boxes, release_gray

    rng = np.random.default_rng(7)
    for _ in range(6):
        cam = ndimage.gaussian_filter(rng.normal(size=(61, 83)), 4)
        want, degenerate = cam_release_boxes(cam)
        got, got_degenerate = release_boxes_from_gray(release_gray(cam))
        np.testing.assert_array_equal(got, want)
        assert got_degenerate == degenerate
        np.testing.assert_array_equal(tencrop_release_boxes(cam / cam.max())[0], want)
        gray = release_gray(cam)
        decoded = jpeg_roundtrip(gray)
        assert decoded.shape == gray.shape and not np.array_equal(decoded, gray)
        assert np.abs(decoded.astype(int) - gray).max() < 40  # lossy, but the same picture
        np.testing.assert_array_equal(tencrop_release_boxes(cam, jpeg=True)[0], release_boxes_from_gray(decoded)[0])
    whole, degenerate = tencrop_release_boxes(np.zeros((5, 7)))
    assert degenerate and whole.tolist() == [[0, 0, 6, 4]] * 2


# --------------------------------------------------------------------------- protocol keys, end to end


def test_protocol_tencrop_keys_validate_and_keep_old_hashes():
    from bench.core.protocol import ProtocolError, load_protocol, protocol_from_dict

    base = load_protocol("ilsvrc_loc_release")
    raw = base.resolved()
    assert "pipeline" not in raw["input"] and "jpeg_roundtrip" not in raw["boxes"]  # hash inputs unchanged
    tencrop = load_protocol("ilsvrc_loc_release_tencrop")
    assert (tencrop.pipeline, tencrop.mean_image, tencrop.jpeg_roundtrip) == ("tencrop_release", "ilsvrc_2012_mean.mat", True)

    def raw_of(p):  # resolved() with the release's fixed (nominal) thresholds left out again
        r = p.resolved()
        r["guesses"] = {"heuristic": r["guesses"]["heuristic"]}
        return r

    assert tencrop.hash != base.hash and protocol_from_dict(raw_of(tencrop)).hash == tencrop.hash
    with pytest.raises(ProtocolError, match="`bench run` does not run"):
        tencrop.require_resize_pipeline("bench run")
    base.require_resize_pipeline("bench run")

    def bad(table, key, value):
        r = raw_of(tencrop)
        r[table][key] = value
        return r

    with pytest.raises(ProtocolError, match="cam.upsample' must be 'bicubic'"):
        protocol_from_dict(bad("cam", "upsample", "bilinear"))
    with pytest.raises(ProtocolError, match="must be a relative path inside the data root"):
        protocol_from_dict(bad("input", "mean_image", "/etc/mean.mat"))
    one_view = raw_of(base)
    one_view["input"]["mean_image"] = "m.mat"
    with pytest.raises(ProtocolError, match="applies only with input.pipeline"):
        protocol_from_dict(one_view)
    loc = load_protocol("ilsvrc_loc").resolved()
    loc["boxes"]["jpeg_roundtrip"] = True
    with pytest.raises(ProtocolError, match="jpeg_roundtrip' applies only with boxes.rule = 'cam_release'"):
        protocol_from_dict(loc)
    with pytest.raises(ProtocolError, match="cam.method' must be 'cam'"):
        tencrop.with_method("gradcam")
    with_wsol = raw_of(tencrop)
    with_wsol["wsol"] = {"evaluation": "boxes"}
    with pytest.raises(ProtocolError, match="takes no \\[wsol\\] table"):
        protocol_from_dict(with_wsol)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """A 1000-class tiny Caffe net (NET_B with fc -> 1000), converted, and 4 generated val images."""
    from bench.data.classes import load_wnids
    from bench.data.fixtures import generated_samples, write_ilsvrc_layout

    tmp = tmp_path_factory.mktemp("caffe_e2e")
    layers = [dict(L, num_output=1000) if L["name"] == "fc" else L for L in NET_B]
    weights = _random_weights(layers, NET_B_INPUT, seed=11)
    proto, model = write_net(tmp, layers, NET_B_INPUT, weights, "v2", stem="tinycam")
    wnids = load_wnids()
    data = write_ilsvrc_layout(tmp / "data", generated_samples(4, seed=2, wnids=[wnids[i] for i in (3, 500)]), layouts=("voc",))["voc"]
    return {"tmp": tmp, "layers": layers, "weights": weights, "proto": proto, "model": model, "data": data}


def test_bench_run_with_a_converted_caffe_model(e2e, tmp_path):
    """`bench convert caffe` then `bench run --model caffe:NET.pt`: the scores are the network's on
    the harness's input, preprocessed here independently (BGR, 0-255, per-channel mean)."""
    from bench.cli import main
    from bench.data.open import open_dataset
    from bench.data.transforms import InputTransform, decode_rgb
    from bench.models.caffe import CAFFE_MEAN_BGR
    from bench.core.records import parse_ints
    from bench.run.results import RunDir

    net_pt = tmp_path / "tinycam.pt"
    assert main(["convert", "caffe", str(e2e["proto"]), str(e2e["model"]), "--out", str(net_pt)]) == 0
    out = tmp_path / "results"
    common = ["--workers", "0", "--batch-size", "2", "--no-progress", "--data", str(e2e["data"]), "--out", str(out)]
    assert main(["run", "--suite", "ilsvrc_loc", "--model", f"caffe:{net_pt}", *common]) == 0
    run = RunDir(out / "ilsvrc_loc" / "tinycam")
    frame = run.read_records()
    assert len(frame) == 4 and (frame["status"] == "ok").all()
    assert run.read_manifest()["model"]["grid"] == 2
    to01 = InputTransform(12, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    for row, gt in zip(frame.itertuples(), open_dataset(e2e["data"]).images):
        rgb01 = to01(decode_rgb(gt.path)).double().numpy()
        caffe_in = 255.0 * rgb01[::-1] - np.array(CAFFE_MEAN_BGR)[:, None, None]
        scores = ref_forward(e2e["layers"], e2e["weights"], caffe_in)
        want = np.argsort(-scores, kind="stable")[:5]
        assert parse_ints(row.top5_classes).tolist() == want.tolist()
    # the same model straight from the Caffe files: same records; the run folder of the converted
    # file is refused to it (same name, other weights file)
    direct_args = ["run", "--suite", "ilsvrc_loc", "--model", str(e2e["proto"]), "--weights", str(e2e["model"])]
    assert main([*direct_args, *common]) == 2
    assert main([*direct_args, *common, "--out", str(tmp_path / "direct")]) == 0
    direct = RunDir(tmp_path / "direct" / "ilsvrc_loc" / "tinycam").read_records()
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(direct, frame)


def test_bench_tencrop_end_to_end(e2e, tmp_path, capsys):
    """`bench tencrop`: the suite and its tight/loose companion; records equal the pipeline's
    functions applied image by image; `bench table` reads the runs; `bench run` refuses the suite."""
    from bench.cli import main
    from bench.data.open import open_dataset
    from bench.data.transforms import decode_rgb
    from bench.models import build_model
    from bench.models.caffe.tencrop import load_mean_image, tencrop_maps, tencrop_release_boxes
    from bench.core.records import parse_boxes, parse_ints
    from bench.run.results import RunDir

    mean = np.full((3, 256, 256), 100.0, dtype=np.float32)
    mean[1] = 120.0
    np.save(e2e["data"] / "mean.npy", mean)
    root = Path(__file__).resolve().parents[1] / "protocols"
    for name in ("ilsvrc_loc_release_tencrop", "ilsvrc_loc_release_tencrop_tight_loose"):
        text = (root / f"{name}.toml").read_text().replace("ilsvrc_loc_release_tencrop", "tc_test").replace('"ilsvrc_2012_mean.mat"', '"mean.npy"')
        (tmp_path / f"{name.replace('ilsvrc_loc_release_tencrop', 'tc_test')}.toml").write_text(text)
    out = tmp_path / "results"
    model_arg = str(e2e["proto"])
    args = ["tencrop", "--suite", str(tmp_path / "tc_test.toml"), "--model", model_arg, "--weights", str(e2e["model"]),
            "--data", str(e2e["data"]), "--limit", "3", "--shard-size", "2", "--no-progress", "--out", str(out), "--device", "cpu"]  # fmt: skip
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "tc_test_tight_loose.toml").write_text((tmp_path / "tc_test_tight_loose.toml").read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # companions are looked up by name in ./protocols, then the shipped suites
        assert main(args) == 0
        before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(out.rglob("*")) if f.is_file()}
        assert main(args) == 0  # rerunning the same command keeps the finished runs
        assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in sorted(out.rglob("*")) if f.is_file()} == before  # and writes nothing
        inline = [*args[:-4], "--out", str(tmp_path / "inline"), "--device", "cpu", "--box-workers", "0"]
        assert main(inline) == 0
    model, _ = build_model(model_arg, weights=e2e["model"])
    gts = open_dataset(e2e["data"]).images
    mean_image = load_mean_image(e2e["data"] / "mean.npy")
    runs = {s: RunDir(out / s / "tinycam").read_records() for s in ("tc_test", "tc_test_tight_loose")}
    for suite_name, frame in runs.items():
        assert len(frame) == 3 and (frame["status"] == "ok").all()
        inline_records = RunDir(tmp_path / "inline" / suite_name / "tinycam").read_records()
        pytest.importorskip("pandas.testing").assert_frame_equal(inline_records, frame)  # threads change nothing
    for i, gt in enumerate(gts[:3]):
        res = tencrop_maps(model, decode_rgb(gt.path), mean_image=mean_image)
        boxes = [tencrop_release_boxes(m, jpeg=True)[0] for m in res.maps]  # [loose, tight] per top-5 class
        top5 = runs["tc_test"].iloc[i]
        assert parse_ints(top5.top5_classes).tolist() == res.top_classes.tolist()
        assert parse_boxes(top5.guess_boxes).tolist() == [b[0].tolist() for b in boxes]  # bbox1: first box of c1..c5
        tl = runs["tc_test_tight_loose"].iloc[i]
        want = [boxes[0][0], boxes[0][1], boxes[1][0], boxes[1][1], boxes[2][0]]  # bboxCombine
        assert parse_boxes(tl.guess_boxes).tolist() == np.stack(want).tolist()
    capsys.readouterr()
    assert main(["table", "--paper", "3", "--runs", str(out)]) == 0
    assert "tinycam" in capsys.readouterr().out
    # the one-view commands refuse the ten-crop suite with a clear message
    assert main(["run", "--suite", str(tmp_path / "tc_test_tight_loose.toml"), "--model", model_arg, "--weights", str(e2e["model"]), "--data", str(e2e["data"]), "--out", str(tmp_path / "r2"), "--no-progress", "--workers", "0"]) == 2
    assert "bench tencrop" in capsys.readouterr().err
    # overlays would redraw one-view CAMs: bench show says it cannot replay a ten-crop run
    assert main(["show", str(out / "tc_test" / "tinycam"), "--out", str(tmp_path / "show"), "--device", "cpu"]) == 2
    assert "cannot be replayed as one-view CAMs" in capsys.readouterr().err


def test_mean_files_of_both_layouts_give_one_mean(tmp_path):
    """Asymmetric content (a row ramp, a column ramp and one pixel per channel): the new file's
    ``mean_data`` (W x H x C) and the old file's ``image_mean`` (H x W x C) of the same mean image load
    to the same C x H x W array; loading the old layout the new way would transpose it."""
    from scipy.io import savemat

    from bench.models.caffe.tencrop import load_mean_image

    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    chw = np.stack([100 + 0.1 * y, 110 + 0.05 * x, 120 + 0.02 * y + 0.01 * x])  # B, G, R
    chw[0, 3, 7], chw[1, 200, 5], chw[2, 9, 250] = 1.0, 2.0, 3.0
    savemat(tmp_path / "new.mat", {"mean_data": chw.transpose(2, 1, 0)})  # element [x, y, c]
    savemat(tmp_path / "old.mat", {"image_mean": chw.transpose(1, 2, 0)})  # element [y, x, c]
    for name in ("new.mat", "old.mat"):
        mean = load_mean_image(tmp_path / name)
        np.testing.assert_array_equal(mean, chw)
        assert (mean[0, 3, 7], mean[1, 200, 5], mean[2, 9, 250]) == (1.0, 2.0, 3.0)
        assert mean[0, 255, 0] == pytest.approx(100 + 25.5) and mean[1, 0, 255] == pytest.approx(110 + 12.75)
