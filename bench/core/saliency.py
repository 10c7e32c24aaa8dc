"""The saliency community's localisation scores, per map, batched in torch (pure functions).

Conventions shared by every function here:

- ``maps``: ``(N, H, W)`` real maps, indexed ``[n, y, x]`` (row = y = vertical, column = x =
  horizontal; the axis order of images and of :func:`boxes_to_mask`). They are at the resolution of
  the regions: in the suites, the original image size after the protocol's upsample rule.
- ``regions``: ``(N, H, W)`` boolean ground-truth masks on the same grid (a box is rasterised by
  :func:`boxes_to_mask`: 0-based inclusive ``(x1, y1, x2, y2)``, rows ``y1..y2`` and columns
  ``x1..x2`` both inclusive).
- Scores are float64 tensors of shape ``(N,)``; NaN marks a score its definition leaves undefined
  (empty region, zero total mass, ...), exactly where the reference implementation returns NaN.

Definitions (each the reference's, with its defaults):

- **pointing game** (Zhang et al. 2016; TorchRay ``benchmark/pointing_game.py``): the point is the
  map's maximum, the first one in raster order (row-major) among ties, as ``torch.argmax`` of the
  flattened map returns it; a hit when some region pixel ``(x, y)`` has
  ``(x - px)**2 + (y - py)**2 < tolerance**2`` (strict), distances computed in float32 as TorchRay
  does. An empty region is never hit.
- **energy pointing game** (Wang et al. 2020, Score-CAM): the map made non-negative by
  ``max(map, 0)`` (Score-CAM's maps are ReLU outputs), then ``sum(map inside region) / sum(map)``.
  NaN when the non-negative map is all zero or the region is empty.
- **Quantus 0.6** localisation metrics, with Quantus's defaults (``normalise=True``: divide by the
  maximum absolute value, skipped for an all-zero map; ``abs`` as each metric's default):
  relevance mass accuracy (``abs=False``): ``sum(a in region) / sum(a)``; relevance rank accuracy
  (``abs=False``): with ``K = |region|``, the share of the ``K`` highest values that lie in the
  region; top-k intersection (``k=1000``, ``abs=False``): the share of the ``k`` highest values
  that lie in the region; attribution localisation (``abs=True``):
  ``sum(|a| in region) / (sum(|a|) + 1e-9)``, NaN when above 1; AUC (``abs=False``): the ROC AUC of
  the map as a score for region membership (sklearn's ``roc_curve`` + ``auc``: ties between a
  region and a non-region pixel count one half), NaN when the region is empty or the whole map.
  Every Quantus metric is NaN for an empty region. Ranking ties: Quantus sorts with numpy's
  default (unstable) ``argsort``, so its top-K among equal values is unspecified; here equal
  values are taken in raster order (what a stable sort gives), documented in docs/protocol.md.
  Scores are computed in float64 on the maps' device.
  Normalisation is per map here (Quantus divides a whole batch by the batch's maximum): the
  scores are scale-free, so the two agree except through attribution localisation's ``1e-9``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "ATTRIBUTION_LOCALISATION_EPS",
    "argmax_points",
    "attribution_localisation",
    "boxes_to_mask",
    "energy_pointing_game",
    "localisation_auc",
    "pointing_hits",
    "quantus_normalise",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
]

#: Quantus 0.6 ``AttributionLocalisation``: ``inside / (total + 1e-9)``.
ATTRIBUTION_LOCALISATION_EPS = 1e-9


def _check(maps: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(maps.shape)}")
    if tuple(regions.shape) != tuple(maps.shape):
        raise ValueError(f"regions {tuple(regions.shape)} must have the maps' shape {tuple(maps.shape)}")
    return maps.to(torch.float64), regions.to(device=maps.device, dtype=torch.bool)


def boxes_to_mask(boxes: Sequence[Sequence[float]] | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The union of boxes as a ``(H, W)`` bool mask; ``size = (H, W)``.

    Boxes are 0-based inclusive pixels ``(x1, y1, x2, y2)``: rows ``y1..y2`` and columns ``x1..x2``
    (a box ``(0, 0, 0, 0)`` is the one top-left pixel). Coordinates are truncated to int and the box
    clipped to the image; a box empty after clipping adds nothing.
    """
    h, w = int(size[0]), int(size[1])
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4).trunc().long()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    x1, y1, x2, y2 = (b[:, i].view(-1, 1, 1) for i in range(4))
    inside = (ys >= y1) & (ys <= y2) & (xs >= x1) & (xs <= x2)
    return inside.any(dim=0) if len(b) else torch.zeros((h, w), dtype=torch.bool)


def argmax_points(maps: torch.Tensor) -> torch.Tensor:
    """The maximum point of each map, ``(N, 2)`` long ``(x, y)``; ties: first in raster order."""
    n, _h, w = maps.shape
    flat = torch.argmax(maps.reshape(n, -1), dim=1)
    return torch.stack((flat % w, torch.div(flat, w, rounding_mode="floor")), dim=1)


def pointing_hits(points: torch.Tensor, regions: torch.Tensor, tolerance: int = 15) -> torch.Tensor:
    """Pointing-game hits, ``(N,)`` bool: a region pixel strictly within ``tolerance`` of the point.

    ``points``: ``(N, 2)`` ``(x, y)`` in pixels (integers from :func:`argmax_points`, or any real
    point, e.g. the image centre ``(W/2, H/2)`` of TorchRay's centre baseline).
    """
    if regions.ndim != 3:
        raise ValueError(f"regions must be (N, H, W), got shape {tuple(regions.shape)}")
    n, h, w = regions.shape
    p = torch.as_tensor(points, device=regions.device).to(torch.float32).reshape(n, 2)
    dy2 = (torch.arange(h, dtype=torch.float32, device=regions.device).view(1, h) - p[:, 1:2]) ** 2
    dx2 = (torch.arange(w, dtype=torch.float32, device=regions.device).view(1, w) - p[:, 0:1]) ** 2
    accept = (dy2[:, :, None] + dx2[:, None, :]) < float(tolerance) ** 2
    return (accept & regions.bool()).reshape(n, -1).any(dim=1)


def _ratio(inside: torch.Tensor, total: torch.Tensor, region_size: torch.Tensor) -> torch.Tensor:
    out = inside / total
    return torch.where(region_size > 0, out, torch.full_like(out, math.nan))


def energy_pointing_game(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Score-CAM's energy pointing game: ``sum(max(m,0) in region) / sum(max(m,0))`` per map."""
    m, r = _check(maps, regions)
    m = m.clamp(min=0)
    total = m.sum(dim=(1, 2))
    inside = (m * r).sum(dim=(1, 2))
    out = _ratio(inside, total, r.sum(dim=(1, 2)))
    return torch.where(total > 0, out, torch.full_like(out, math.nan))


def quantus_normalise(maps: torch.Tensor, take_abs: bool = False) -> torch.Tensor:
    """Quantus's ``normalise_by_max`` per map (all-zero maps unchanged), then ``abs`` if asked."""
    m = maps.to(torch.float64)
    peak = m.abs().amax(dim=(1, 2), keepdim=True)
    m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), m)
    return m.abs() if take_abs else m


def relevance_mass_accuracy(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Quantus ``RelevanceMassAccuracy()``: ``sum(a in region) / sum(a)`` (0/0 NaN, x/0 ±inf)."""
    m, r = _check(maps, regions)
    m = quantus_normalise(m)
    return _ratio((m * r).sum(dim=(1, 2)), m.sum(dim=(1, 2)), r.sum(dim=(1, 2)))


def _kth_largest(row: torch.Tensor, k: int, use_numpy: bool | None = None) -> float:
    """The ``k``-th largest value of a 1-D tensor (numpy's selection on CPU: torch's is far slower;
    ``use_numpy`` forces one path, for tests)."""
    if row.device.type == "cpu" if use_numpy is None else use_numpy:
        a = row.numpy()
        return float(np.partition(a, a.size - k)[a.size - k])
    return float(torch.kthvalue(row, row.numel() - k + 1).values)


def _top_in_region(values: torch.Tensor, region: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row: how many of the ``k[i]`` largest values lie in the region, equal values taken in
    raster order (as a stable descending sort would take them). ``(N, P)`` rows; O(P) per row
    (an order statistic and one cumulative sum, no full sort)."""
    out = torch.zeros(values.shape[0], dtype=torch.float64, device=values.device)
    for i in range(values.shape[0]):
        ki = int(k[i])
        if ki <= 0:
            continue
        row, reg = values[i], region[i]
        cut = _kth_largest(row, ki)
        above = row > cut
        tied = row == cut
        take_tied = ki - int(above.sum())
        chosen_tied = tied & (torch.cumsum(tied, 0) <= take_tied)
        out[i] = float((reg & (above | chosen_tied)).sum())
    return out


def _mid_rank_sum(values: torch.Tensor, positive: torch.Tensor, use_numpy: bool | None = None) -> float:
    """Sum of the 1-based mid-ranks (ties share the mean rank) of the positive entries of a 1-D tensor
    (numpy on CPU, torch elsewhere; ``use_numpy`` forces one path, for tests)."""
    if values.device.type == "cpu" if use_numpy is None else use_numpy:
        a = values.numpy()
        s, pv = np.sort(a), np.sort(a[positive.numpy()])  # sorted queries: cache-friendly searches
        left, right = np.searchsorted(s, pv, "left"), np.searchsorted(s, pv, "right")
        return float(((left + right + 1) / 2).sum())
    s, pv = torch.sort(values).values, torch.sort(values[positive]).values
    left, right = torch.searchsorted(s, pv, right=False), torch.searchsorted(s, pv, right=True)
    return float(((left + right + 1).double() / 2).sum())


def relevance_rank_accuracy(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Quantus ``RelevanceRankAccuracy()``: share of the ``K = |region|`` top values in the region."""
    m, r = _check(maps, regions)
    n = len(m)
    flat_r = r.reshape(n, -1)
    k = flat_r.sum(dim=1)
    hits = _top_in_region(quantus_normalise(m).reshape(n, -1), flat_r, k)
    return _ratio(hits, k.to(torch.float64), k)


def top_k_intersection(maps: torch.Tensor, regions: torch.Tensor, k: int = 1000) -> torch.Tensor:
    """Quantus ``TopKIntersection(k=1000)``: share of the ``k`` top values in the region.

    Quantus refuses ``k >= H*W``; so does this function (``ValueError``).
    """
    m, r = _check(maps, regions)
    n = len(m)
    pixels = m.shape[1] * m.shape[2]
    if not 0 < k < pixels:
        raise ValueError(f"top-k intersection needs 0 < k < H*W = {pixels}, got k = {k}")
    flat_r = r.reshape(n, -1)
    hits = _top_in_region(quantus_normalise(m).reshape(n, -1), flat_r, torch.full((n,), k)) / k
    return torch.where(flat_r.any(dim=1), hits, torch.full_like(hits, math.nan))


def attribution_localisation(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Quantus ``AttributionLocalisation()``: ``sum(|a| in region) / (sum(|a|) + 1e-9)``; NaN above 1."""
    m, r = _check(maps, regions)
    m = quantus_normalise(m, take_abs=True)
    out = (m * r).sum(dim=(1, 2)) / (m.sum(dim=(1, 2)) + ATTRIBUTION_LOCALISATION_EPS)
    out = torch.where(out > 1, torch.full_like(out, math.nan), out)
    return torch.where(r.reshape(len(r), -1).any(dim=1), out, torch.full_like(out, math.nan))


def localisation_auc(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Quantus ``AUC()``: ROC AUC of the map ranking region pixels above the others.

    Computed as the Mann-Whitney statistic with mid-ranks (equal to the trapezoidal ROC AUC of
    ``sklearn.metrics.roc_curve``, which merges equal scores): NaN when the region is empty or
    covers the whole map (one class only). One sort per map; a positive's mid-rank from its value's first and last position.
    """
    m, r = _check(maps, regions)
    n = m.shape[0]
    values = quantus_normalise(m).reshape(n, -1)
    flat_r = r.reshape(n, -1)
    p = values.shape[1]
    out = torch.full((n,), math.nan, dtype=torch.float64, device=m.device)
    for i in range(n):
        n_pos = int(flat_r[i].sum())
        n_neg = p - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        rank_sum = _mid_rank_sum(values[i], flat_r[i])
        out[i] = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out
