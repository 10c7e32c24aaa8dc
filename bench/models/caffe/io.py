"""Read Caffe files without Caffe: text ``.prototxt`` and binary ``.caffemodel``.

Both are ``caffe.NetParameter`` messages of the project's minimal schema
(:mod:`bench.models.caffe.schema`). Blobs are returned as float32 numpy arrays in Caffe's
own layout (``(out, in/group, kh, kw)`` for convolutions, ``(out, in)`` for inner products).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from google.protobuf import message, text_format

from bench.models.caffe import schema
from bench.models.sources import WeightsError

__all__ = ["CaffeFormatError", "read_prototxt", "read_caffemodel", "blob_array", "caffemodel_blobs"]


class CaffeFormatError(WeightsError):
    """A Caffe file cannot be read or does not describe a supported network (message names the file/layer).

    A :class:`~bench.models.sources.WeightsError`, so the CLI prints it as one line.
    """


def read_prototxt(path: str | os.PathLike[str]) -> "schema.NetParameter":
    """Parse a text ``.prototxt`` (deploy or train_val) strictly.

    Raises:
        FileNotFoundError: no such file.
        CaffeFormatError: not valid protobuf text for the schema (message: file, line, field).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise CaffeFormatError(f"{path}: binary data, not a text .prototxt (pass the .prototxt first, then the .caffemodel)")
    net = schema.NetParameter()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as exc:
        detail = str(exc) if len(str(exc)) <= 300 else str(exc)[:300] + "..."
        raise CaffeFormatError(
            f"{path}: not a Caffe network description this reader supports ({detail}); "
            "pass the deploy/train_val .prototxt, not the .caffemodel"
        ) from None
    if not net.layer and not net.layers:
        raise CaffeFormatError(f"{path}: no layers (neither 'layer {{' nor 'layers {{' blocks)")
    return net


def read_caffemodel(path: str | os.PathLike[str]) -> "schema.NetParameter":
    """Parse a binary ``.caffemodel`` (a ``NetParameter`` with blobs; either dialect).

    Raises:
        FileNotFoundError: no such file.
        CaffeFormatError: not a binary NetParameter.
    """
    path = Path(path)
    data = path.read_bytes()
    net = schema.NetParameter()
    try:
        net.ParseFromString(data)
    except message.DecodeError as exc:
        raise CaffeFormatError(
            f"{path}: not a binary Caffe model ({exc}); pass the .caffemodel, not the .prototxt"
        ) from None
    if not net.layer and not net.layers:
        raise CaffeFormatError(f"{path}: holds no layers; is it a .caffemodel?")
    return net


def blob_array(blob: "schema.BlobProto") -> tuple[np.ndarray, bool]:
    """One blob as ``(float32 array, legacy)``; ``legacy`` = shape from num/channels/height/width.

    The shape is ``blob.shape.dim`` when present, else the legacy 4-D ``(num, channels, height,
    width)``. Values come from ``data`` (float) or ``double_data``.
    """
    if blob.HasField("shape"):
        shape, legacy = tuple(int(d) for d in blob.shape.dim), False
    else:
        shape, legacy = (blob.num, blob.channels, blob.height, blob.width), True
    values = blob.data if len(blob.data) else blob.double_data
    arr = np.array(values, dtype=np.float32)
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise CaffeFormatError(f"blob of shape {shape} holds {arr.size} values")
    return arr.reshape(shape), legacy


def caffemodel_blobs(net: "schema.NetParameter", origin: str = "<caffemodel>") -> dict[str, list[tuple[np.ndarray, bool]]]:
    """Layer name -> its blobs (``(array, legacy)``), from both dialects; layers without blobs left out."""
    out: dict[str, list[tuple[np.ndarray, bool]]] = {}
    for layer in [*net.layers, *net.layer]:
        if not len(layer.blobs):
            continue
        try:
            out[layer.name] = [blob_array(b) for b in layer.blobs]
        except CaffeFormatError as exc:
            raise CaffeFormatError(f"{origin}: layer '{layer.name}': {exc}") from None
    return out
