"""Threshold sweeps of wsolevaluation (Choe et al., "Evaluating Weakly Supervised Object
Localization Methods Right", CVPR 2020): BoxAcc curves, MaxBoxAcc, MaxBoxAccV2 and PxAP.

What is implemented (per image; ``M`` = the GT class's map at the evaluation resolution):

* **Normalisation**: ``m = (M - min M) / (max M - min M)`` in float64; a constant map becomes
  all zeros (wsolevaluation's ``normalize_scoremap``) and then never has foreground.
* **Resolution**: the caller resizes the map -- to 224 x 224 as wsolevaluation does, with the GT
  boxes scaled by truncation (:func:`scale_boxes`: ``int(x * 224 / W)``), or keeps the
  original size (boxes unchanged).
* **Foreground at tau**: ``m > tau`` (strict), for every ``tau`` of a grid (default
  ``np.arange(0, 1, 0.01)``; ``np.arange(0, 1, 0.001)`` for fine curves). Components are
  8-connected; a component's box is its inclusive bounding box.
* **BoxAcc(tau, delta)**, two variants, percent of images:

  - ``largest`` (MaxBoxAcc, wsolevaluation's ``multi_contour_eval=False``): the box of the
    largest component (most pixels; ties: larger sum of ``m``, then first pixel in raster
    order -- the harness's ``largest_cc`` rule) has IoU >= delta with some GT box;
  - ``all`` (MaxBoxAccV2, ``multi_contour_eval=True``): SOME component's box has IoU >= delta
    with some GT box (wsolevaluation takes the best IoU over all contours' boxes and all GT
    boxes, ``>= delta``).

  IoU is the devkit's inclusive one (``+1``), as in wsolevaluation's ``calculate_multiple_iou``.
* **MaxBoxAcc** = ``max_tau BoxAcc_largest(tau, 50)``; **MaxBoxAccV2** = mean over
  ``delta in {30, 50, 70}`` of ``max_tau BoxAcc_all(tau, delta)``; the best ``tau`` (first
  argmax) is reported for each.
* **PxAP** (masks): wsolevaluation's ``MaskEvaluator`` exactly: histograms of ``m`` over GT
  foreground (mask 1) and background (mask 0) pixels of all images (mask value 255 = ignore),
  bin edges ``thresholds + [1, 2, 3]``, cumulated from the top (pixel counted at ``m >= edge``),
  ``PxAP = sum_i precision_i * (recall_i - recall_{i-1})``, in percent.

Known differences from wsolevaluation's *code* (its definitions are the paper's; its code goes
through OpenCV), kept on purpose and listed so numbers are read right:

1. it quantises ``m`` to 8 bits (``uint8(m * 255)``, truncation) and thresholds at
   ``int(tau * max)``: ``quantize=True`` does the same here;
2. it outputs ``(x, y, x + w, y + h)`` clipped to ``W - 1``/``H - 1`` (one pixel past the
   contour on the right/bottom): ``box_convention='wsol'`` does the same;
3. its "largest" contour is the one with the largest *polygon* area (``cv2.contourArea`` through
   the border pixels' centres), not the most pixels; they disagree only between components of
   nearly equal size (not reproduced);
4. its ``RETR_TREE`` contour list also holds *hole* contours (whose box is the hole's box grown
   by 1): a ring-shaped map can hit through its hole's box in MaxBoxAccV2 (not reproduced: only
   components count here);
5. a threshold with no contour gives it the box ``(0, 0, 0, 0)``; here it is a miss.

Algorithm: one pass per map over all thresholds at once, never one labelling per threshold.
With numba installed (the ``fast`` extra; default method ``'compiled'``) the pass is one
compiled union-find over the pixels sorted by level, from the highest threshold down
(:mod:`bench.core.sweep_kernel`): about a millisecond per 224 x 224 map whatever the number of
thresholds. Without numba the numpy implementations below run (same results, slower).

The numpy method ``'basins'``: each pixel gets the index of the highest threshold it passes.
Every pixel climbs to its highest strictly higher neighbour (pointer jumping) until a top: the map
splits into ascent basins, and a pixel is connected to its basin's top at every threshold it passes. Adjacent basins join at
the highest level of a link between them; Kruskal over the basin links (a loop over basins, not
pixels) gives the component tree. Per basin and threshold, size, bbox, map sum and first pixel
come from one reverse-cumulative pass over a ``(basin, level)`` table; a component's numbers at
a threshold aggregate its basins'. The fallback ``method='unionfind'`` (automatic when a map
has so many basins that the table would be too big) runs a level-by-level union-find whose
merges are vectorised (``scipy.sparse.csgraph``). :func:`reference_sweep_map` is the obvious
per-threshold ``scipy.ndimage.label`` version; the tests check all three agree.

Ties on size are broken by the map sum, accumulated per (basin, level) by 'basins' and in merge
order by 'compiled' and 'unionfind', instead of in raster order; two components whose sums are
equal only up to float rounding may therefore be ordered differently from a raster-order sum (sums
are exact for dyadic values such as 8-bit maps, and the tests use such values for ties).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bench.core.scoring import best_iou
from bench.core import sweep_kernel

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FINE_THRESHOLDS",
    "IOU_DELTAS",
    "ImageCounts",
    "MapSweep",
    "SweepAccumulator",
    "normalize_map",
    "scale_boxes",
    "sweep_map",
    "reference_sweep_map",
    "sweep_backend",
    "sweep_thresholds",
]

#: wsolevaluation's default CAM threshold grid (``cam_curve_interval = 0.01``).
DEFAULT_THRESHOLDS: np.ndarray = np.arange(0, 1, 0.01)
#: The fine grid (0.001 step, 1,000 thresholds).
FINE_THRESHOLDS: np.ndarray = np.arange(0, 1, 0.001)
#: IoU thresholds (percent) of MaxBoxAccV2.
IOU_DELTAS: tuple[int, ...] = (30, 50, 70)

_EIGHT = np.ones((3, 3), dtype=bool)


def sweep_thresholds(step: float) -> tuple[float, ...]:
    """The harness sweep's tau grid for ``step``: ``np.arange(0, 1, step)`` rounded to 10 decimals
    (``bench sweep --step``), so that a grid of 0.01 holds 0.07 and not 0.07000000000000001."""
    if not 0 < step < 1:
        raise ValueError(f"step must be in (0, 1), got {step}")
    return tuple(np.round(np.arange(0.0, 1.0, step), 10).tolist())


@dataclass(frozen=True)
class MapSweep:
    """One map's results at every threshold ``t`` (``T`` thresholds, ``D`` IoU deltas).

    Attributes:
        largest_box: ``int64 (T, 4)`` inclusive box of the largest component, ``-1`` rows when
            there is no foreground.
        largest_iou: ``(T,)`` its best IoU over the GT boxes (0 without foreground).
        hit_any: ``bool (T, D)``: some component's box has IoU >= delta.
    """

    largest_box: np.ndarray
    largest_iou: np.ndarray
    hit_any: np.ndarray


@dataclass(frozen=True)
class ImageCounts:
    """What one image adds to a :class:`SweepAccumulator` (small: made in worker processes).

    Attributes:
        largest_hit: ``bool (T, D)``: the largest component's IoU >= delta.
        any_hit: ``bool (T, D)``: some component's IoU >= delta.
        pos_hist, neg_hist: ``(T + 3,)`` histograms of the normalised map over GT foreground /
            background mask pixels (PxAP), or None without a mask.
    """

    largest_hit: np.ndarray
    any_hit: np.ndarray
    pos_hist: np.ndarray | None = None
    neg_hist: np.ndarray | None = None


def normalize_map(cam: np.ndarray) -> np.ndarray:
    """Min-max normalised float64 copy of a finite 2-D map; a constant map gives zeros."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"map must be a non-empty 2-D (H, W) array, got shape {cam.shape}")
    if not np.all(np.isfinite(cam)):
        raise ValueError("map is not finite (NaN or inf)")
    lo, hi = float(cam.min()), float(cam.max())
    if hi == lo:
        return np.zeros_like(cam)
    return (cam - lo) / (hi - lo)


def scale_boxes(boxes: np.ndarray, image_size: tuple[int, int], size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """wsolevaluation's ``resize_bbox``: ``int(x * new_w / w)`` for every coordinate (truncation).

    Args:
        boxes: ``(m, 4)`` inclusive ``(x0, y0, x1, y1)`` in original pixels.
        image_size: original ``(W, H)``.
        size: target ``(W, H)`` (224 x 224 by default).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = map(float, image_size)
    nw, nh = map(float, size)
    scale = np.array([nw / w, nh / h, nw / w, nh / h])
    return np.trunc(b * scale).astype(np.int64)


def _as_gt(gt_boxes: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0] == 0:
        raise ValueError("an image needs at least one GT box")
    return gt


def _box_iou(box: tuple[np.ndarray, ...], gt: np.ndarray, convention: str, height: int, width: int) -> np.ndarray:
    """Best IoU of inclusive pixel boxes, after the output ``convention`` ('inclusive'|'wsol')."""
    x0, y0, x1, y1 = (np.asarray(c, dtype=np.float64) for c in box)
    if convention == "wsol":  # (x, y, x + w, y + h) clipped to the last pixel
        x1 = np.minimum(x1 + 1.0, width - 1.0)
        y1 = np.minimum(y1 + 1.0, height - 1.0)
    return best_iou(np.stack([x0, y0, x1, y1], axis=1), gt)


def _levels(m: np.ndarray, thresholds: np.ndarray, quantize: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(values compared, level per pixel)``: pixel p is foreground at threshold t iff t < L[p]."""
    if quantize:
        g = (m * 255.0).astype(np.uint8)  # wsolevaluation: (scoremap * 255).astype(np.uint8)
        thr = np.array([int(t * float(g.max())) for t in thresholds], dtype=np.float64)
        values = g.astype(np.float64)
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        values = m
    # thresholds ascending (non-decreasing after quantisation): #{t : thr_t < v}
    return values, np.searchsorted(thr, values.ravel(), side="left")


def _check_common(thresholds: Any, deltas: Any, convention: str) -> tuple[np.ndarray, np.ndarray]:
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thr.size == 0 or np.any(np.diff(thr) <= 0) or thr[0] < 0 or thr[-1] >= 1:
        raise ValueError("thresholds must be strictly increasing fractions in [0, 1)")
    d = np.asarray(deltas, dtype=np.float64).reshape(-1) / 100.0
    if d.size == 0 or np.any((d <= 0) | (d > 1)):
        raise ValueError("IoU deltas are percents in (0, 100]")
    if convention not in ("inclusive", "wsol"):
        raise ValueError(f"box_convention must be 'inclusive' or 'wsol', got {convention!r}")
    return thr, d


def sweep_map(
    m: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    deltas: Sequence[float] = IOU_DELTAS,
    *,
    quantize: bool = False,
    box_convention: str = "inclusive",
    method: str = "auto",
) -> MapSweep:
    """All thresholds of one *normalised* map in one pass (see the module docstring).

    Args:
        m: ``(H, W)`` map in [0, 1] (:func:`normalize_map`).
        gt_boxes: ``(k, 4)`` inclusive GT boxes in the map's pixels.
        thresholds: strictly increasing fractions in [0, 1).
        deltas: IoU thresholds in percent.
        quantize: wsolevaluation's 8-bit quantisation of map and thresholds.
        box_convention: ``'inclusive'`` or ``'wsol'`` (``x1 + 1`` clipped), for IoUs.
        method: ``'compiled'`` (one compiled union-find pass, :mod:`bench.core.sweep_kernel`;
            needs numba), ``'basins'`` (component tree of the map's ascent basins, numpy),
            ``'unionfind'`` (level-by-level vectorised union-find, numpy) or ``'auto'``
            (compiled when numba is installed; else basins unless the map has so many basins
            that their per-level table would exceed :data:`_BASIN_TABLE_LIMIT` cells, then
            unionfind). All give identical results.

    Returns:
        :class:`MapSweep` indexed like ``thresholds``.
    """
    thr, d = _check_common(thresholds, deltas, box_convention)
    if method not in ("auto", "compiled", "basins", "unionfind"):
        raise ValueError(f"method must be 'auto', 'compiled', 'basins' or 'unionfind', got {method!r}")
    if method == "compiled" and not sweep_kernel.AVAILABLE:
        raise ValueError("method='compiled' needs numba: pip install 'wsol-bench[fast]' (or use method='auto')")
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"map must be a non-empty 2-D (H, W) array, got shape {m.shape}")
    gt = _as_gt(gt_boxes)
    if method == "compiled" or (method == "auto" and sweep_kernel.AVAILABLE):
        return _sweep_compiled(m, thr, gt, d, quantize, box_convention == "wsol")
    values, level = _levels(m, thr, quantize)
    if method != "unionfind":
        res = _sweep_basins(values, level, thr.size, gt, d, box_convention, force=method == "basins")
        if res is not None:
            return res
    return _sweep_unionfind(values, level, thr.size, gt, d, box_convention)


#: Largest ``basins x (thresholds + 1)`` table :func:`_sweep_basins` builds before 'auto' falls
#: back to the union-find (about 7 arrays of this many cells).
_BASIN_TABLE_LIMIT: int = 4_000_000

_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _sweep_basins(
    values: np.ndarray, level: np.ndarray, n_t: int, gt: np.ndarray, d: np.ndarray,
    box_convention: str, force: bool = False,
) -> MapSweep | None:
    """Single pass through the map's ascent basins (module docstring, "Algorithm").

    1. Every pixel climbs to its highest strictly higher 8-neighbour until it reaches a pixel
       with none (pointer jumping); those end pixels, grouped 8-connected (they form plateaus
       of equal value), are the basins' tops. Along a climb values never decrease, so a pixel
       is connected to its basin's top at every threshold it passes.
    2. Two adjacent basins join at the highest level of a link between them
       (``max over adjacent pairs of min(level p, level q)``). Kruskal over these basin links,
       highest first (a Python loop over basins, not pixels), gives the component tree: each
       component is a set of basins alive over a range of thresholds.
    3. Per basin and threshold, the size, bbox, map sum and first pixel of its part above the
       threshold come from one reverse cumulative pass over a ``(basin, level)`` table; a
       component's stats at a threshold aggregate its basins' rows.
    Returns None (caller falls back) when the table would be larger than the limit.
    """
    height, width = values.shape
    n = height * width
    v = values.ravel()
    if not np.any(level > 0):  # no foreground at any threshold
        return MapSweep(
            largest_box=np.full((n_t, 4), -1, dtype=np.int64),
            largest_iou=np.zeros(n_t),
            hit_any=np.zeros((n_t, d.size), dtype=bool),
        )
    pad = np.pad(values, 1, mode="constant", constant_values=-np.inf)
    neigh = np.stack([pad[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in _OFFSETS])
    k = neigh.argmax(axis=0)
    higher = neigh.max(axis=0) > values
    rows, cols = np.divmod(np.arange(n), width)
    dys = np.array([o[0] for o in _OFFSETS])[k].ravel()
    dxs = np.array([o[1] for o in _OFFSETS])[k].ravel()
    ptr = np.where(higher.ravel(), (rows + dys) * width + cols + dxs, np.arange(n))
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    top_lab, n_b = ndimage.label(~higher, structure=_EIGHT)
    basin = top_lab.ravel()[ptr] - 1  # 0..n_b-1
    if not force and n_b * (n_t + 1) > _BASIN_TABLE_LIMIT:
        return None
    b_level = np.zeros(n_b, dtype=np.int64)
    b_level[basin[ptr]] = level[ptr]  # the top's level (constant over a plateau)

    # Basin links: highest level at which two adjacent basins touch.
    idx = np.arange(n).reshape(height, width)
    pairs = [
        (idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),
        (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1]),
    ]  # fmt: skip
    pa = np.concatenate([p.ravel() for p, _ in pairs])
    pb = np.concatenate([q.ravel() for _, q in pairs])
    ba, bb = basin[pa], basin[pb]
    sl = np.minimum(level[pa], level[pb])
    keep = (ba != bb) & (sl > 0)
    lo_b, hi_b = np.minimum(ba[keep], bb[keep]), np.maximum(ba[keep], bb[keep])
    key = lo_b * n_b + hi_b
    sl = sl[keep]
    if key.size:
        o = np.lexsort((-sl, key))
        key, sl = key[o], sl[o]
        firsts = np.r_[True, key[1:] != key[:-1]]
        key, sl = key[firsts], sl[firsts]  # max level per basin pair
    link_a, link_b = np.divmod(key, n_b)

    # Kruskal over basin links, births and merges from the highest threshold down.
    events: list[tuple[int, int, int, int]] = []  # (t, kind, a, b); births (kind 0) first
    for b in np.flatnonzero(b_level > 0).tolist():
        events.append((int(b_level[b]) - 1, 0, b, b))
    for a, b, s in zip(link_a.tolist(), link_b.tolist(), sl.tolist()):
        events.append((s - 1, 1, a, b))
    events.sort(key=lambda e: (-e[0], e[1]))
    parent = list(range(n_b))
    members: dict[int, list[int]] = {}
    top: dict[int, int] = {}
    segments: list[tuple[list[int], int, int]] = []  # (basins, lowest t, highest t)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t, kind, a, b in events:
        if kind == 0:
            members[a] = [a]
            top[a] = t
            continue
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        for r in (ra, rb):
            if top[r] >= t + 1:
                segments.append((members[r], t + 1, top[r]))
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        members[ra] = members[ra] + members.pop(rb)
        top.pop(rb)
        top[ra] = t
    for r, mem in members.items():
        segments.append((mem, 0, top[r]))

    # (basin, level) table, reverse-cumulated: column c holds the pixels with level >= c.
    width_t = n_t + 1
    fg = np.flatnonzero(level > 0)
    cell = basin[fg] * width_t + level[fg]
    o = np.argsort(cell, kind="stable")
    cell, fg = cell[o], fg[o]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    ucell = cell[starts]
    big = n + 1

    def table(src: np.ndarray, ufunc: np.ufunc, fill: float, dtype: type) -> np.ndarray:
        g = np.full(n_b * width_t, fill, dtype=dtype)
        g[ucell] = ufunc.reduceat(src[fg], starts)
        g = g.reshape(n_b, width_t)[:, ::-1]
        if ufunc is np.add:
            g = np.cumsum(g, axis=1)
        else:
            g = ufunc.accumulate(g, axis=1)
        return g[:, ::-1]

    cnt = table(np.ones(n, dtype=np.int64), np.add, 0, np.int64)
    csum = table(v, np.add, 0.0, np.float64)
    first = table(np.arange(n), np.minimum, big, np.int64)
    x0 = table(cols, np.minimum, big, np.int64)
    y0 = table(rows, np.minimum, big, np.int64)
    x1 = table(cols, np.maximum, -1, np.int64)
    y1 = table(rows, np.maximum, -1, np.int64)

    # One row per (component, threshold): aggregate its basins' table cells at column t + 1.
    parts: list[list[np.ndarray]] = [[] for _ in range(8)]
    for mem, lo, hi in segments:
        mb = np.asarray(mem)
        sl_ = slice(lo + 1, hi + 2)
        parts[0].append(np.arange(lo, hi + 1))
        parts[1].append(cnt[mb, sl_].sum(axis=0))
        parts[2].append(csum[mb, sl_].sum(axis=0))
        parts[3].append(first[mb, sl_].min(axis=0))
        parts[4].append(x0[mb, sl_].min(axis=0))
        parts[5].append(y0[mb, sl_].min(axis=0))
        parts[6].append(x1[mb, sl_].max(axis=0))
        parts[7].append(y1[mb, sl_].max(axis=0))
    largest_box = np.full((n_t, 4), -1, dtype=np.int64)
    largest_iou = np.zeros(n_t)
    hit_any = np.zeros((n_t, d.size), dtype=bool)
    if not segments:
        return MapSweep(largest_box=largest_box, largest_iou=largest_iou, hit_any=hit_any)
    t_r, size_r, sum_r, first_r, x0_r, y0_r, x1_r, y1_r = (np.concatenate(p) for p in parts)
    iou_r = _box_iou((x0_r, y0_r, x1_r, y1_r), gt, box_convention, height, width)
    best_any = np.full(n_t, -1.0)
    np.maximum.at(best_any, t_r, iou_r)
    alive = best_any >= 0
    hit_any[alive] = best_any[alive, None] >= d[None, :]
    # Largest per threshold: most pixels, then larger sum, then first pixel in raster order.
    o = np.lexsort((-first_r, sum_r, size_r, t_r))
    last = o[np.r_[t_r[o][1:] != t_r[o][:-1], True]]
    ts = t_r[last]
    largest_box[ts] = np.column_stack([x0_r[last], y0_r[last], x1_r[last], y1_r[last]])
    largest_iou[ts] = iou_r[last]
    return MapSweep(largest_box=largest_box, largest_iou=largest_iou, hit_any=hit_any)


def _sweep_unionfind(
    values: np.ndarray, level: np.ndarray, n_t: int, gt: np.ndarray, d: np.ndarray, box_convention: str
) -> MapSweep:
    """Level-by-level union-find, each level's merges vectorised (the 'unionfind' method)."""
    height, width = values.shape
    v = values.ravel()

    # Per-pixel (= per-component-root) state; a component's id is one of its pixels.
    n = height * width
    parent = np.arange(n)
    rows, cols = np.divmod(np.arange(n), width)
    size = np.ones(n, dtype=np.int64)
    bx0, by0, bx1, by1 = cols.copy(), rows.copy(), cols.copy(), rows.copy()
    csum = v.copy()
    first = np.arange(n)
    iou = np.zeros(n)

    # 8-neighbour links, each with the level at which both ends are foreground.
    idx = np.arange(n).reshape(height, width)
    pairs = [
        (idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),
        (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1]),
    ]  # fmt: skip
    ep = np.concatenate([p.ravel() for p, _ in pairs])
    eq = np.concatenate([q.ravel() for _, q in pairs])
    elev = np.minimum(level[ep], level[eq])
    live = elev > 0
    ep, eq, elev = ep[live], eq[live], elev[live]
    e_order = np.argsort(elev, kind="stable")
    ep, eq = ep[e_order], eq[e_order]
    e_bounds = np.searchsorted(elev[e_order], np.arange(n_t + 2), side="left")
    p_order = np.argsort(level, kind="stable")
    p_bounds = np.searchsorted(level[p_order], np.arange(n_t + 2), side="left")

    largest_box = np.full((n_t, 4), -1, dtype=np.int64)
    largest_iou = np.zeros(n_t)
    hit_any = np.zeros((n_t, d.size), dtype=bool)
    count = np.zeros(d.size, dtype=np.int64)  # alive components with IoU >= delta
    best = -1  # root of the current largest component
    alive = 0

    def find(x: np.ndarray) -> np.ndarray:
        r = parent[x]
        while True:
            r2 = parent[r]
            if np.array_equal(r2, r):
                return r
            r = r2

    for t in range(n_t - 1, -1, -1):
        lvl = t + 1
        born = p_order[p_bounds[lvl] : p_bounds[lvl + 1]]
        e_lo, e_hi = e_bounds[lvl], e_bounds[lvl + 1]
        if born.size == 0 and e_lo == e_hi:
            if alive:  # nothing changed: same components as at t + 1
                largest_box[t] = largest_box[t + 1]
                largest_iou[t] = largest_iou[t + 1]
                hit_any[t] = hit_any[t + 1]
            continue
        cands = [born]
        if born.size:
            iou[born] = _box_iou((bx0[born], by0[born], bx1[born], by1[born]), gt, box_convention, height, width)
            count += (iou[born][:, None] >= d[None, :]).sum(axis=0)
            alive += born.size
        if e_hi > e_lo:
            rp = find(ep[e_lo:e_hi])
            rq = find(eq[e_lo:e_hi])
            keep = rp != rq
            if keep.any():
                rp, rq = rp[keep], rq[keep]
                u, inv = np.unique(np.concatenate([rp, rq]), return_inverse=True)
                k = rp.size
                graph = coo_matrix((np.ones(k, dtype=np.int8), (inv[:k], inv[k:])), shape=(u.size, u.size))
                n_groups, grp = connected_components(graph, directed=False)
                # Representative = the biggest member (union by size; ties: smallest id).
                order = np.lexsort((u, -size[u], grp))
                members = u[order]
                starts = np.flatnonzero(np.r_[True, grp[order][1:] != grp[order][:-1]])
                rep = members[starts]
                count -= (iou[u][:, None] >= d[None, :]).sum(axis=0)
                size[rep] = np.add.reduceat(size[members], starts)
                bx0[rep] = np.minimum.reduceat(bx0[members], starts)
                by0[rep] = np.minimum.reduceat(by0[members], starts)
                bx1[rep] = np.maximum.reduceat(bx1[members], starts)
                by1[rep] = np.maximum.reduceat(by1[members], starts)
                csum[rep] = np.add.reduceat(csum[members], starts)
                first[rep] = np.minimum.reduceat(first[members], starts)
                parent[u] = rep[grp]
                iou[rep] = _box_iou((bx0[rep], by0[rep], bx1[rep], by1[rep]), gt, box_convention, height, width)
                count += (iou[rep][:, None] >= d[None, :]).sum(axis=0)
                alive -= u.size - n_groups
                cands.append(rep)
                # Path compression for the link ends (keeps later finds short).
                parent[ep[e_lo:e_hi]] = find(ep[e_lo:e_hi])
                parent[eq[e_lo:e_hi]] = find(eq[e_lo:e_hi])
        if best >= 0:
            cands.append(find(np.array([best])))
        c = np.unique(np.concatenate(cands))
        # Largest: most pixels, then larger map sum, then first pixel in raster order.
        win = c[np.lexsort((-first[c], csum[c], size[c]))[-1]]
        best = int(win)
        largest_box[t] = (bx0[win], by0[win], bx1[win], by1[win])
        largest_iou[t] = iou[win]
        hit_any[t] = count > 0
    return MapSweep(largest_box=largest_box, largest_iou=largest_iou, hit_any=hit_any)


def _sweep_compiled(m: np.ndarray, thr: np.ndarray, gt: np.ndarray, d: np.ndarray, quantize: bool, wsol: bool) -> MapSweep:
    """:func:`sweep_map` through the compiled kernel (the same values and thresholds as ``_levels``)."""
    inverse = None
    if quantize:
        g = (m * 255.0).astype(np.uint8)
        values = g.astype(np.float64)
        # int(t * max) for t >= 0, as in _levels; at most 256 distinct ones, whose results are
        # computed once each and repeated for the equal thresholds
        thr, inverse = np.unique(np.trunc(thr * float(g.max())), return_inverse=True)
    else:
        values = np.ascontiguousarray(m)
    if values.shape[0] >= 2**15 or values.shape[1] >= 2**16:
        raise ValueError(f"map of shape {values.shape} is too large for the compiled sweep (< 32768 x 65536)")
    lut, lo, scale = sweep_kernel.level_lut(thr)
    box, iou, hit = sweep_kernel.sweep_levels(values, thr, lut, lo, scale, np.ascontiguousarray(gt), d, wsol)
    if inverse is not None:
        box, iou, hit = box[inverse], iou[inverse], hit[inverse]
    return MapSweep(largest_box=box, largest_iou=iou, hit_any=hit)


def sweep_backend() -> str:
    """``'numba'`` when :func:`sweep_map` runs the compiled kernel by default, else ``'numpy'``."""
    return "numba" if sweep_kernel.AVAILABLE else "numpy"


def reference_sweep_map(
    m: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    deltas: Sequence[float] = IOU_DELTAS,
    *,
    quantize: bool = False,
    box_convention: str = "inclusive",
) -> MapSweep:
    """The same results as :func:`sweep_map` with one ``scipy.ndimage.label`` per threshold."""
    thr, d = _check_common(thresholds, deltas, box_convention)
    m = np.asarray(m, dtype=np.float64)
    gt = _as_gt(gt_boxes)
    height, width = m.shape
    values, level = _levels(m, thr, quantize)
    level = level.reshape(height, width)
    out_box = np.full((thr.size, 4), -1, dtype=np.int64)
    out_iou = np.zeros(thr.size)
    out_hit = np.zeros((thr.size, d.size), dtype=bool)
    for t in range(thr.size):
        lab, n = ndimage.label(level > t, structure=_EIGHT)
        if n == 0:
            continue
        sl = ndimage.find_objects(lab)
        box = np.array([[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in sl], dtype=np.int64)
        flat = lab.ravel()
        sizes = np.bincount(flat, minlength=n + 1)[1:]
        sums = np.bincount(flat, weights=values.ravel(), minlength=n + 1)[1:]
        # ndimage.label numbers components in raster order of their first pixel.
        win = np.lexsort((-np.arange(n), sums, sizes))[-1]
        ious = _box_iou(tuple(box.T), gt, box_convention, height, width)
        out_box[t] = box[win]
        out_iou[t] = ious[win]
        out_hit[t] = (ious[:, None] >= d[None, :]).any(axis=0)
    return MapSweep(largest_box=out_box, largest_iou=out_iou, hit_any=out_hit)


class SweepAccumulator:
    """Accumulates per-image sweeps; :meth:`results` gives curves, MaxBoxAcc(V2), PxAP.

    Args:
        thresholds: the tau grid (default ``np.arange(0, 1, 0.01)``).
        iou_thresholds: deltas in percent (default 30, 50, 70).
        quantize: wsolevaluation's 8-bit quantisation (module docstring, difference 1).
        box_convention: ``'inclusive'`` (default) or ``'wsol'`` (difference 2).

    Usage::

        acc = SweepAccumulator()
        for cam, boxes, mask in data:      # cam already at the evaluation size, boxes scaled
            acc.add(cam, boxes, mask)
        res = acc.results()
    """

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        iou_thresholds: Sequence[int] = IOU_DELTAS,
        *,
        quantize: bool = False,
        box_convention: str = "inclusive",
    ) -> None:
        thr = DEFAULT_THRESHOLDS if thresholds is None else thresholds
        self.thresholds, _ = _check_common(thr, iou_thresholds, box_convention)
        self.deltas = tuple(int(x) if float(x).is_integer() else float(x) for x in iou_thresholds)
        self.quantize = quantize
        self.box_convention = box_convention
        n_t, n_d = self.thresholds.size, len(self.deltas)
        self._largest = np.zeros((n_t, n_d), dtype=np.int64)
        self._any = np.zeros((n_t, n_d), dtype=np.int64)
        self._count = 0
        self._edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self._pos_hist = np.zeros(self._edges.size - 1)
        self._neg_hist = np.zeros(self._edges.size - 1)
        self._mask_images = 0

    def add(self, cam: np.ndarray, gt_boxes: np.ndarray, mask: np.ndarray | None = None) -> MapSweep:
        """Add one image.

        Args:
            cam: ``(H, W)`` raw map of the GT class at the evaluation size (normalised here).
            gt_boxes: ``(k, 4)`` inclusive GT boxes in the map's pixels (:func:`scale_boxes`).
            mask: optional ``(H, W)`` GT mask: 1/True foreground, 0/False background, 255
                ignored -- for PxAP.

        Returns:
            The image's :class:`MapSweep`.
        """
        res, counts = self.count(cam, gt_boxes, mask)
        self.add_counts(counts)
        return res

    def count(self, cam: np.ndarray, gt_boxes: np.ndarray, mask: np.ndarray | None = None) -> tuple[MapSweep, ImageCounts]:
        """One image's sweep and counts, without adding them (arguments as :meth:`add`).

        Pure: worker processes call it on a copy of the accumulator and send the small
        :class:`ImageCounts` back for :meth:`add_counts`.
        """
        m = normalize_map(cam)
        res = sweep_map(
            m, gt_boxes, self.thresholds, self.deltas,
            quantize=self.quantize, box_convention=self.box_convention,
        )  # fmt: skip
        d = np.asarray(self.deltas, dtype=np.float64) / 100.0
        pos = neg = None
        if mask is not None:
            mk = np.asarray(mask)
            if mk.shape != m.shape:
                raise ValueError(f"mask shape {mk.shape} != map shape {m.shape}")
            mk = mk.astype(np.int64)
            pos = np.histogram(m[mk == 1], bins=self._edges)[0]
            neg = np.histogram(m[mk == 0], bins=self._edges)[0]
        return res, ImageCounts(res.largest_iou[:, None] >= d[None, :], res.hit_any, pos, neg)

    def add_counts(self, counts: ImageCounts) -> None:
        """Add one image's :class:`ImageCounts` (from :meth:`count` with the same settings)."""
        if counts.largest_hit.shape != self._largest.shape or counts.any_hit.shape != self._any.shape:
            raise ValueError(
                f"counts of shape {counts.largest_hit.shape} do not fit this accumulator {self._largest.shape}"
            )
        self._largest += counts.largest_hit
        self._any += counts.any_hit
        self._count += 1
        if counts.pos_hist is not None and counts.neg_hist is not None:
            self._pos_hist += counts.pos_hist
            self._neg_hist += counts.neg_hist
            self._mask_images += 1

    def add_totals(self, largest_hits: np.ndarray, any_hits: np.ndarray, images: int) -> None:
        """Add counts summed over ``images`` images elsewhere (``(T, D)`` each, as the sums of
        :class:`ImageCounts`' ``largest_hit`` / ``any_hit``): merging accumulators, or the states of
        :class:`bench.metrics.MaxBoxAcc` reduced across processes."""
        largest_hits = np.asarray(largest_hits, dtype=np.int64)
        any_hits = np.asarray(any_hits, dtype=np.int64)
        if largest_hits.shape != self._largest.shape or any_hits.shape != self._any.shape:
            raise ValueError(f"totals of shape {largest_hits.shape} do not fit this accumulator {self._largest.shape}")
        self._largest += largest_hits
        self._any += any_hits
        self._count += int(images)

    def pxap(self) -> float | None:
        """PxAP in percent (wsolevaluation ``MaskEvaluator.compute``); None without masks."""
        if self._mask_images == 0:
            return None
        n_pos = self._pos_hist.sum()
        if n_pos <= 0:
            raise ValueError("PxAP needs at least one foreground mask pixel")
        tp = self._pos_hist[::-1].cumsum()
        fp = self._neg_hist[::-1].cumsum()
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        recall = tp / n_pos
        return float(100.0 * np.nansum(precision[1:] * np.diff(recall)))

    def results(self) -> dict[str, Any]:
        """Curves and summary numbers (percent).

        Returns:
            ``images``; ``curves`` (DataFrame: ``tau``, ``boxacc_<delta>`` for the largest
            component and ``boxacc_v2_<delta>`` for any component, per delta); ``maxboxacc``
            (delta 50, largest; None if 50 is not a delta) and ``best_tau``; ``maxboxacc_v2``
            (mean over deltas of the max over tau, any component), ``maxboxacc_v2_per_delta``
            and ``best_tau_v2`` (dicts by delta); ``pxap`` (None without masks) and
            ``pxap_images``.
        """
        if self._count == 0:
            raise ValueError("no image was added")
        largest = 100.0 * self._largest / self._count
        anyc = 100.0 * self._any / self._count
        curves = pd.DataFrame({"tau": self.thresholds})
        for j, dl in enumerate(self.deltas):
            curves[f"boxacc_{dl}"] = largest[:, j]
        for j, dl in enumerate(self.deltas):
            curves[f"boxacc_v2_{dl}"] = anyc[:, j]
        per_delta = {dl: float(anyc[:, j].max()) for j, dl in enumerate(self.deltas)}
        best_v2 = {dl: float(self.thresholds[int(np.argmax(anyc[:, j]))]) for j, dl in enumerate(self.deltas)}
        out: dict[str, Any] = {
            "images": self._count,
            "curves": curves,
            "maxboxacc": None,
            "best_tau": None,
            "maxboxacc_v2": float(np.mean(list(per_delta.values()))),
            "maxboxacc_v2_per_delta": per_delta,
            "best_tau_v2": best_v2,
            "pxap": self.pxap(),
            "pxap_images": self._mask_images,
        }
        if 50 in self.deltas:
            j = self.deltas.index(50)
            out["maxboxacc"] = float(largest[:, j].max())
            out["best_tau"] = float(self.thresholds[int(np.argmax(largest[:, j]))])
        return out
