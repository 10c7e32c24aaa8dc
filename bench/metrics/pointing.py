"""The pointing game (Zhang et al. 2016, TorchRay's benchmark rule) as a metric object.

``PointingGame(tolerance=15, classes=...)``: ``update(maps, regions, classes)`` with ``maps (N, H,
W)``, boolean ``regions (N, H, W)`` on the same grid and each pair's class (an index into the
object's class list, or the class id itself). The point is the map's maximum (first in raster order
among ties), a hit when a region pixel lies strictly within ``tolerance`` pixels
(:func:`bench.core.saliency.pointing_hits`). A point-based method passes ``points (N, 2)`` ``(x,
y)`` instead of taking the maps' maxima.

States: per-class hit and pair counts, ``dist_reduce_fx="sum"``. ``compute()``:
``pointing_accuracy`` = mean over classes with at least one pair of ``hits / pairs`` (TorchRay's
``accuracy`` averages over all classes, a class without pairs counting 0; on VOC07 test and COCO
val2014 every class has pairs and the two agree), ``pointing_accuracy_overall`` = all hits / all
pairs, ``pointing_pairs``, ``pointing_hits``, ``pointing_classes`` (classes with pairs) and
``pointing_class_accuracy`` (class id -> accuracy, classes with pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from bench.core.saliency import argmax_points, pointing_hits

__all__ = ["PointingGame"]


class PointingGame(Metric):
    """Pointing-game accuracy, mean of per-class accuracies (TorchRay's rule)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, tolerance: int = 15, *, classes: int | Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        if int(tolerance) != tolerance or tolerance < 0:
            raise ValueError(f"tolerance must be a non-negative integer (pixels), got {tolerance!r}")
        self.tolerance = int(tolerance)
        if isinstance(classes, int):
            self.class_ids = [str(i) for i in range(classes)]
        else:
            self.class_ids = [str(c) for c in classes]
        if not self.class_ids or len(set(self.class_ids)) != len(self.class_ids):
            raise ValueError("classes must be a positive count or a list of distinct class ids")
        self._index = {c: i for i, c in enumerate(self.class_ids)}
        k = len(self.class_ids)
        self.add_state("hits", default=torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")

    def class_index(self, classes: torch.Tensor | Sequence[int | str]) -> torch.Tensor:
        """Class indices ``(N,)`` from indices or class ids (``KeyError`` naming an unknown id)."""
        if isinstance(classes, torch.Tensor):
            idx = classes.reshape(-1).long()
        elif all(isinstance(c, str) for c in classes):
            unknown = [c for c in classes if c not in self._index]
            if unknown:
                raise KeyError(f"class id {unknown[0]!r} is not in this PointingGame's classes")
            idx = torch.tensor([self._index[c] for c in classes], dtype=torch.long)
        else:
            idx = torch.as_tensor(list(classes), dtype=torch.long)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.class_ids)):
            raise IndexError(f"class index out of range 0..{len(self.class_ids) - 1}")
        return idx

    def hits_of(self, maps: torch.Tensor | None, regions: torch.Tensor, points: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pair hits ``(N,)`` bool, nothing accumulated (points: ``points`` or the maps' maxima)."""
        regions = torch.as_tensor(regions)
        if points is None:
            if maps is None:
                raise ValueError("give maps or points")
            maps = torch.as_tensor(maps)
            if tuple(maps.shape) != tuple(regions.shape):
                raise ValueError(f"maps {tuple(maps.shape)} and regions {tuple(regions.shape)} differ in shape")
            points = argmax_points(maps)
        return pointing_hits(points, regions, self.tolerance)

    def accumulate(self, hits: torch.Tensor, classes: torch.Tensor | Sequence[int | str]) -> None:
        """Add per-pair hits computed elsewhere; same as ``update(None, None, classes, hits=hits)``."""
        self.update(None, None, classes, hits=hits)

    def update(
        self,
        maps: torch.Tensor | None,
        regions: torch.Tensor | None,
        classes: torch.Tensor | Sequence[int | str],
        points: torch.Tensor | None = None,
        *,
        hits: torch.Tensor | None = None,
    ) -> None:
        """Score one batch of (map, region, class) pairs (or accumulate given per-pair ``hits``)."""
        if hits is None:
            if regions is None:
                raise ValueError("give regions (with maps or points), or hits")
            hits = self.hits_of(maps, regions, points)
        idx = self.class_index(classes).to(self.hits.device)
        h = torch.as_tensor(hits).reshape(-1).to(device=self.hits.device, dtype=torch.long)
        if len(h) != len(idx):
            raise ValueError(f"{len(h)} hits for {len(idx)} classes")
        self.hits += torch.bincount(idx, weights=h.double(), minlength=len(self.class_ids)).round().long()
        self.pairs += torch.bincount(idx, minlength=len(self.class_ids))

    def compute(self) -> dict:
        hits, pairs = self.hits.cpu(), self.pairs.cpu()
        seen = pairs > 0
        acc = hits[seen].double() / pairs[seen].double()
        total = int(pairs.sum())
        return {
            "pointing_accuracy": float(acc.mean()) if len(acc) else math.nan,
            "pointing_accuracy_overall": int(hits.sum()) / total if total else math.nan,
            "pointing_pairs": total,
            "pointing_hits": int(hits.sum()),
            "pointing_classes": int(seen.sum()),
            "pointing_class_accuracy": {
                self.class_ids[i]: float(hits[i]) / float(pairs[i]) for i in range(len(self.class_ids)) if pairs[i] > 0
            },
        }
