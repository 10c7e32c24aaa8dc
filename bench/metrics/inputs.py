"""The inputs the metric objects accept, checked and put in one form.

* **maps**: a tensor or array ``(N, h, w)`` (any device, any float dtype), or a sequence of ``N``
  2-D maps of any sizes (tensors or arrays). Maps of one shape are grouped and stacked, so that a
  resize runs once per group (:func:`map_groups`); tensors stay on their device.
* **boxes**: ``N`` arrays ``(k_i, 4)`` of GT boxes ``(x1, y1, x2, y2)``, 0-based inclusive pixels of
  the ORIGINAL image (wsolevaluation's ``localization.txt``), ``k_i >= 1``; or one ``(N, k, 4)`` array.
* **sizes**: ``(N, 2)`` original image sizes as ``(width, height)`` (wsolevaluation's
  ``image_sizes.txt`` order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Union

import numpy as np
import torch

from bench.runtime import BenchError

__all__ = ["MetricInputError", "Maps", "count_maps", "map_groups", "as_box_list", "as_sizes", "as_int_vector"]

#: What ``maps`` may be: one ``(N, h, w)`` tensor/array, or a sequence of 2-D maps.
Maps = Union[torch.Tensor, np.ndarray, Sequence[Any]]


class MetricInputError(BenchError, ValueError):
    """An argument of a metric object's ``update`` has the wrong shape, type or length."""


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)):
        raise MetricInputError(f"{what} has dtype {t.dtype}; expected a real-valued map")
    return t


def _map_items(maps: Maps) -> list[torch.Tensor] | torch.Tensor:
    """``maps`` as one ``(N, h, w)`` tensor, or a list of 2-D tensors."""
    if isinstance(maps, (torch.Tensor, np.ndarray)):
        t = _as_tensor(maps, "maps")
        if t.ndim != 3 or 0 in t.shape[1:]:
            raise MetricInputError(f"maps must be (N, h, w) or a list of 2-D maps, got shape {tuple(t.shape)}")
        return t
    out = [_as_tensor(m, f"maps[{i}]") for i, m in enumerate(maps)]
    for i, t in enumerate(out):
        if t.ndim != 2 or 0 in t.shape:
            raise MetricInputError(f"maps[{i}] must be a 2-D (h, w) map, got shape {tuple(t.shape)}")
    return out


def count_maps(maps: Maps) -> int:
    """The number of maps ``N``."""
    return int(maps.shape[0]) if isinstance(maps, (torch.Tensor, np.ndarray)) else len(maps)


def map_groups(maps: Maps) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices, stacked maps (B, h, w))`` per distinct map shape, in order of first appearance;
    the stack stays on the maps' device and keeps their dtype."""
    items = _map_items(maps)
    if isinstance(items, torch.Tensor):
        if items.shape[0]:
            yield np.arange(items.shape[0]), items
        return
    shapes: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(items):
        shapes.setdefault((str(t.device), *t.shape), []).append(i)
    for idx in shapes.values():
        yield np.asarray(idx), torch.stack([items[i] for i in idx]) if len(idx) > 1 else items[idx[0]][None]


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def as_box_list(boxes: Any, n: int) -> list[np.ndarray]:
    """``n`` float64 arrays ``(k_i, 4)`` of inclusive xyxy GT boxes, each checked."""
    if isinstance(boxes, np.ndarray) and boxes.dtype == object:  # an object array of (k_i, 4) arrays
        boxes = list(boxes)
    if isinstance(boxes, (torch.Tensor, np.ndarray)):
        arr = _numpy(boxes)
        if arr.ndim != 3 or arr.shape[-1] != 4:
            raise MetricInputError(f"boxes must be N arrays (k, 4) or one (N, k, 4) array, got shape {arr.shape}")
        boxes = list(arr)
    if len(boxes) != n:
        raise MetricInputError(f"{len(boxes)} box arrays for {n} maps; give one (k, 4) array of GT boxes per map")
    out = []
    for i, b in enumerate(boxes):
        a = np.asarray(_numpy(b), dtype=np.float64)
        a = a.reshape(-1, 4) if a.size and a.shape[-1] == 4 else a
        if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] == 0:
            raise MetricInputError(f"boxes[{i}] must be (k, 4) xyxy with k >= 1, got shape {np.shape(b)}")
        if not np.all(np.isfinite(a)) or np.any(a[:, 2] < a[:, 0]) or np.any(a[:, 3] < a[:, 1]):
            raise MetricInputError(f"boxes[{i}] holds a non-finite box or one with x2 < x1 or y2 < y1 (boxes are xyxy inclusive)")
        out.append(a)
    return out


def as_sizes(sizes: Any, n: int) -> np.ndarray:
    """``(n, 2)`` int64 original image sizes ``(width, height)``, each at least 1."""
    arr = np.asarray(_numpy(sizes) if isinstance(sizes, torch.Tensor) else sizes)
    if arr.shape != (n, 2):
        raise MetricInputError(f"sizes must be (N={n}, 2) as (width, height), got shape {arr.shape}")
    if not np.all(np.isfinite(arr.astype(np.float64))) or np.any(arr.astype(np.float64) != np.round(arr.astype(np.float64))):
        raise MetricInputError("sizes must be whole pixel counts (width, height)")
    out = arr.astype(np.int64)
    if np.any(out < 1):
        raise MetricInputError("sizes must be at least 1 pixel (width, height)")
    return out


def as_int_vector(values: Any, n: int, what: str) -> np.ndarray:
    """``(n,)`` int64 (class indices, dataset indices)."""
    arr = np.asarray(_numpy(values) if isinstance(values, torch.Tensor) else values).reshape(-1)
    if arr.shape[0] != n:
        raise MetricInputError(f"{what} has {arr.shape[0]} entries for {n} maps")
    if arr.dtype.kind not in "iu":
        raise MetricInputError(f"{what} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)
