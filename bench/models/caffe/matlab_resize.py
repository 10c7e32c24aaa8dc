"""MATLAB's ``imresize`` (bilinear / bicubic, antialiasing when shrinking), as resize matrices.

The CAM release resized images and heat maps with MATLAB's ``imresize``, which differs from
PyTorch's and Pillow's resizers in three ways that move map values (and so box edges):

* kernel: MATLAB's cubic is Keys' kernel with ``a = -0.5``
  (``1.5|x|^3 - 2.5|x|^2 + 1`` on ``|x| <= 1``, ``-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` on
  ``1 < |x| <= 2``); PyTorch's ``bicubic`` uses ``a = -0.75``; Pillow uses ``-0.5`` too;
* antialiasing: when shrinking (scale ``s < 1``) MATLAB stretches the kernel,
  ``h(x) = s k(s x)`` of width ``w / s`` (default on for bilinear and bicubic); PyTorch does this
  only with ``antialias=True``;
* borders: MATLAB mirrors out-of-range taps (``aux = [1:n, n:-1:1]``, half-sample symmetric);
  PyTorch clamps to the edge pixel; Pillow drops the taps and renormalises.

Per axis MATLAB maps output pixel ``x`` (1-based) to input coordinate
``u = x / s + 0.5 (1 - 1/s)``, takes taps ``floor(u - w/2) + (0 .. ceil(w) + 1)``, weights
``h(u - index)`` normalised to sum 1, and mirrors the indices. We build that as a dense
``(out, in)`` matrix (mirrored taps that land on the same pixel add up) and apply the two axes as
matrix products. MATLAB resizes the axis with the smaller scale first; the two products commute,
so only float rounding can differ.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["imresize_matrix", "imresize"]


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    a2, a3 = a * a, a * a * a
    return (1.5 * a3 - 2.5 * a2 + 1) * (a <= 1) + (-0.5 * a3 + 2.5 * a2 - 4 * a + 2) * ((a > 1) & (a <= 2))


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


_KERNELS = {"bicubic": (_cubic, 4.0), "bilinear": (_triangle, 2.0)}


def imresize_matrix(in_len: int, out_len: int, method: str = "bicubic", antialias: bool = True) -> np.ndarray:
    """The ``(out_len, in_len)`` float64 matrix of MATLAB's 1-D ``imresize`` (see module docstring)."""
    if method not in _KERNELS:
        raise ValueError(f"method must be one of {sorted(_KERNELS)}, got {method!r}")
    if in_len < 1 or out_len < 1:
        raise ValueError(f"lengths must be >= 1, got {in_len} -> {out_len}")
    kernel, width = _KERNELS[method]
    scale = out_len / in_len
    if scale < 1 and antialias:
        def h(x: np.ndarray) -> np.ndarray:
            return scale * kernel(scale * x)

        width = width / scale
    else:
        h = kernel
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left + np.arange(taps)[None, :]
    weights = h(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    period = 2 * in_len
    mirrored = np.mod(indices.astype(np.int64) - 1, period)  # 0-based position in aux
    mirrored = np.where(mirrored < in_len, mirrored, period - 1 - mirrored)  # aux = [1:n, n:-1:1]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.broadcast_to(np.arange(out_len)[:, None], mirrored.shape), mirrored), weights)
    return matrix


def imresize(image: Tensor, size: tuple[int, int], method: str = "bicubic", antialias: bool = True) -> Tensor:
    """MATLAB ``imresize(image, [rows cols], method)`` of a float tensor ``(..., H, W)``.

    Computed in ``image.dtype`` (float32 or float64) on ``image.device``.
    """
    h, w = image.shape[-2:]
    ry = torch.as_tensor(imresize_matrix(h, size[0], method, antialias), dtype=image.dtype, device=image.device)
    rx = torch.as_tensor(imresize_matrix(w, size[1], method, antialias), dtype=image.dtype, device=image.device)
    return ry @ image @ rx.T
