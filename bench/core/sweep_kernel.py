"""Compiled single-pass threshold sweep (numba): one union-find pass over the pixels of a map.

The kernel behind :func:`bench.core.sweep.sweep_map` when numba is installed (``method='compiled'``,
the default then). Definitions are those of :mod:`bench.core.sweep`; this module only computes
them fast:

1. **Levels**: pixel ``p`` gets ``level[p] = #{t : thr_t < v_p}`` (it is foreground at threshold
   index ``t`` iff ``t < level[p]``), found by a bucket look-up (:func:`level_lut`) then an exact
   correction against the thresholds themselves, so it equals ``np.searchsorted(thr, v, 'left')``.
   The levels live in a grid padded by one background pixel, so neighbours need no bounds checks.
2. **Counting sort** of the foreground pixels by level (``<= T + 1`` levels), raster order kept
   within a level. In the same raster pass each pixel gets its ring mask: which of its 8
   neighbours are present when it is added (a higher level, or the same level and earlier in
   raster order) -- a function of the levels only.
3. **Union-find from the top level down** (union by size, path halving). Level ``L`` (threshold
   index ``t = L - 1``) adds its pixels in raster order: a pixel with no present neighbour starts
   a component; otherwise it joins the component of its first present neighbour, and the
   components of the other runs of present neighbours around the ring are merged into it
   (consecutive ring neighbours are 8-adjacent, and two adjacent present pixels are already
   connected, so one find per run suffices). Each root keeps its size, inclusive bounding box, map
   sum and first pixel (raster index). A running count per IoU delta of the roots whose box hits
   (IoU >= delta) is updated lazily: a merge or a box that grows removes the root's old
   contribution, and the roots touched in a level get their IoU recomputed once at its end.
4. **Largest component**: components only grow as the threshold falls, and growing strictly
   increases the size, so the largest one (most pixels, then larger map sum, then smaller first
   pixel) is kept as a running maximum over births, joins and merges.

Cost: one pass over the pixels plus ``O(T x D)`` output, i.e. independent of the number of
thresholds up to the output. All arithmetic that decides a result (IoU, comparisons) is the same
float64 arithmetic, in the same order, as :func:`bench.core.sweep.reference_sweep_map`; the only
difference is the order in which a component's map sum is added up (see the sweep module's note
on ties).

``numba`` is optional: :data:`AVAILABLE` is False without it and :mod:`bench.core.sweep` falls
back to its numpy implementations, which give identical results (tested).
"""

from __future__ import annotations

import numpy as np

from bench.core.jit import AVAILABLE, njit

__all__ = ["AVAILABLE", "level_lut", "sweep_levels"]


def level_lut(thr: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A bucket table over ``[thr[0], thr[-1]]`` that guesses ``#{t : thr_t < v}`` for a value.

    Returns ``(lut, lo, scale)``: bucket ``b = int((v - lo) * scale)`` holds the count for the
    bucket's lower end; :func:`sweep_levels` corrects the guess against the thresholds themselves,
    so the level is exact whatever the guess (the table only makes the correction short).
    """
    thr = np.asarray(thr, dtype=np.float64)
    lo, hi = float(thr[0]), float(thr[-1])
    n_b = max(1024, 4 * thr.size)
    scale = n_b / (hi - lo) if hi > lo else 0.0
    starts = lo + np.arange(n_b, dtype=np.float64) / scale if scale > 0 else np.full(n_b, lo)
    return np.searchsorted(thr, starts, side="left").astype(np.int64), lo, scale


@njit(cache=True, nogil=True)
def _ring_tables() -> tuple[np.ndarray, np.ndarray]:
    """For an 8-bit ring mask of present neighbours: the bits starting a run of present ones
    (a full ring is one run, started at bit 0), and the index of the lowest set bit."""
    run_starts = np.zeros(256, dtype=np.int64)
    lowest_bit = np.zeros(256, dtype=np.int64)
    for m in range(256):
        if m == 255:
            run_starts[m] = 1
        else:
            run_starts[m] = m & ~(((m << 1) | (m >> 7)) & 255)
        k = 0
        while k < 8 and not (m >> k) & 1:
            k += 1
        lowest_bit[m] = k
    return run_starts, lowest_bit


@njit(cache=True, nogil=True, inline="always")
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def _best_iou(
    x0: float, y0: float, x1: float, y1: float, gt: np.ndarray, wsol: bool, height: int, width: int
) -> float:
    """Best inclusive IoU over the GT boxes; the same float64 operations as the numpy version."""
    if wsol:  # (x, y, x + w, y + h) clipped to the last pixel
        x1 = min(x1 + 1.0, width - 1.0)
        y1 = min(y1 + 1.0, height - 1.0)
    best = -np.inf
    for g in range(gt.shape[0]):
        iw = min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1.0
        ih = min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1.0
        inter = iw * ih if (iw > 0 and ih > 0) else 0.0
        area = (x1 - x0 + 1.0) * (y1 - y0 + 1.0)
        garea = (gt[g, 2] - gt[g, 0] + 1.0) * (gt[g, 3] - gt[g, 1] + 1.0)
        iou = inter / (area + garea - inter)
        if np.isnan(best):
            continue  # numpy's max propagates NaN
        if np.isnan(iou) or iou > best:
            best = iou
    return best


@njit(cache=True, nogil=True)
def sweep_levels(
    values: np.ndarray,
    thr: np.ndarray,
    lut: np.ndarray,
    lut_lo: float,
    lut_scale: float,
    gt: np.ndarray,
    deltas: np.ndarray,
    wsol: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sweep of one map (module docstring).

    Args:
        values: float64 ``(H, W)`` compared values (also the map-sum tie-break), C-contiguous.
        thr: float64 ``(T,)`` non-decreasing thresholds; pixel p is foreground at threshold
            index ``t`` iff ``thr_t < v_p``.
        lut, lut_lo, lut_scale: :func:`level_lut` of ``thr``.
        gt: float64 ``(k, 4)`` inclusive GT boxes.
        deltas: float64 ``(D,)`` IoU thresholds as fractions.
        wsol: wsolevaluation's box output convention (``x1 + 1`` clipped) for IoUs.

    Returns:
        ``largest_box`` int64 ``(T, 4)`` (``-1`` rows without foreground), ``largest_iou``
        float64 ``(T,)``, ``hit_any`` bool ``(T, D)``.
    """
    height, width = values.shape
    n_t = thr.size
    n_b = lut.size
    n_d = deltas.size
    largest_box = np.full((n_t, 4), -1, dtype=np.int64)
    largest_iou = np.zeros(n_t, dtype=np.float64)
    hit_any = np.zeros((n_t, n_d), dtype=np.bool_)

    # Pixels live in a grid padded by one background pixel on each side (level 0 is never
    # foreground), so the 8 neighbours are fixed offsets without bounds checks. Padded indices
    # are in raster order like the original ones, so "first pixel" compares padded indices.
    pw = width + 2
    n_pad = (height + 2) * pw
    plev = np.zeros(n_pad, dtype=np.int32)
    start = np.zeros(n_t + 2, dtype=np.int64)
    for r in range(height):
        x = (r + 1) * pw + 1
        for c in range(width):
            v = values[r, c]
            if not np.isfinite(v):
                raise ValueError("map is not finite (NaN or inf)")
            # level = #{t : thr_t < v}: the table's guess, then corrected exactly
            f = (v - lut_lo) * lut_scale
            b = 0 if f < 0 else (n_b - 1 if f >= n_b else int(f))
            lv = lut[b]
            lv += (lv < n_t) & (thr[min(lv, n_t - 1)] < v)  # the usual single step, branch-free
            while lv < n_t and thr[lv] < v:
                lv += 1
            while lv > 0 and not thr[lv - 1] < v:
                lv -= 1
            plev[x + c] = lv
            start[lv + 1] += 1
    for lv in range(1, n_t + 2):
        start[lv] += start[lv - 1]
    # The 8 neighbours in ring order (NW, N, NE, E, SE, S, SW, W): each is adjacent to the next.
    ring = np.array([-pw - 1, -pw, -pw + 1, 1, pw + 1, pw, pw - 1, -1], dtype=np.int64)
    run_starts, lowest_bit = _ring_tables()
    # Counting sort of the foreground by level, raster order within a level; position, value
    # and the ring mask kept beside. Neighbour q is present when p is added iff q has a higher
    # level, or the same level and comes earlier in raster order (NW, N, NE, W do; E, SE, S, SW
    # do not): that depends only on the levels, so the mask is found here, in raster order,
    # and kept as the run starts of the ring (0: p starts a new component).
    fill = start.copy()
    n_fg = height * width - start[1]
    order = np.empty(n_fg, dtype=np.int32)
    o_pos = np.empty(n_fg, dtype=np.int32)  # row << 16 | column (16 bits each)
    o_val = np.empty(n_fg, dtype=np.float64)
    o_runs = np.empty(n_fg, dtype=np.uint8)
    base = start[1]
    for r in range(height):
        x0 = (r + 1) * pw + 1
        for c in range(width):
            x = x0 + c
            lv = plev[x]
            if lv == 0:
                continue
            mask = (
                int(plev[x - pw - 1] >= lv)
                | int(plev[x - pw] >= lv) << 1
                | int(plev[x - pw + 1] >= lv) << 2
                | int(plev[x + 1] > lv) << 3
                | int(plev[x + pw + 1] > lv) << 4
                | int(plev[x + pw] > lv) << 5
                | int(plev[x + pw - 1] > lv) << 6
                | int(plev[x - 1] >= lv) << 7
            )
            k = fill[lv] - base
            order[k] = x
            o_pos[k] = (r << 16) | c
            o_val[k] = values[r, c]
            o_runs[k] = run_starts[mask]
            fill[lv] += 1

    parent = np.empty(n_pad, dtype=np.int32)
    size = np.empty(n_pad, dtype=np.int32)
    csum = np.empty(n_pad, dtype=np.float64)
    first = np.empty(n_pad, dtype=np.int32)
    bx0 = np.empty(n_pad, dtype=np.int32)
    by0 = np.empty(n_pad, dtype=np.int32)
    bx1 = np.empty(n_pad, dtype=np.int32)
    by1 = np.empty(n_pad, dtype=np.int32)
    iou = np.zeros(n_pad, dtype=np.float64)
    counted = np.zeros(n_pad, dtype=np.bool_)  # the root's IoU is in `count`
    dirty = np.zeros(n_pad, dtype=np.bool_)  # the root changed in this level
    dirty_list = np.empty(max(n_fg, 1), dtype=np.int32)
    count = np.zeros(n_d, dtype=np.int64)  # roots whose box has IoU >= delta
    best = -1  # root of the largest component

    for lv in range(n_t, 0, -1):
        n_dirty = 0
        # Pixels of the level in raster order. The present neighbours of p are those of a
        # higher level and those of this level earlier in raster order (already added), so a
        # same-level pair is joined once, from its later pixel. Consecutive neighbours around
        # the ring are 8-adjacent and two adjacent present pixels are already connected, so
        # only the first neighbour of each run of present ones needs a find.
        for i in range(start[lv] - base, start[lv + 1] - base):
            p = order[i]
            col = o_pos[i] & 0xFFFF
            row = o_pos[i] >> 16
            v = o_val[i]
            runs = np.int64(o_runs[i])
            if runs == 0:  # a new component
                parent[p] = p
                size[p] = 1
                csum[p] = v
                first[p] = p
                bx0[p] = col
                bx1[p] = col
                by0[p] = row
                by1[p] = row
                counted[p] = False
                dirty[p] = True
                dirty_list[n_dirty] = p
                n_dirty += 1
                if best < 0 or (
                    size[best] == 1 and (v > csum[best] or (v == csum[best] and p < first[best]))
                ):
                    best = p
                continue
            k = lowest_bit[runs]
            # Join p to the first run's component (p itself never becomes a root).
            r = _find(parent, p + ring[k])
            parent[p] = r
            size[r] += 1
            csum[r] += v
            if p < first[r]:
                first[r] = p
            if col < bx0[r] or col > bx1[r] or row < by0[r] or row > by1[r]:
                bx0[r] = min(bx0[r], col)
                bx1[r] = max(bx1[r], col)
                by0[r] = min(by0[r], row)
                by1[r] = max(by1[r], row)
                if counted[r]:  # its box changed: its hits are recounted at the end of the level
                    for j in range(n_d):
                        if iou[r] >= deltas[j]:
                            count[j] -= 1
                    counted[r] = False
                if not dirty[r]:
                    dirty[r] = True
                    dirty_list[n_dirty] = r
                    n_dirty += 1
            # A component that grows beats what it beat before.
            if best != r and (
                size[r] > size[best]
                or (size[r] == size[best] and (csum[r] > csum[best] or (csum[r] == csum[best] and first[r] < first[best])))
            ):
                best = r
            # Other runs: merge their components into p's (union by size).
            runs &= runs - 1
            while runs:
                k2 = lowest_bit[runs]
                runs &= runs - 1
                ra = _find(parent, p)
                rb = _find(parent, p + ring[k2])
                if ra == rb:
                    continue
                if size[ra] < size[rb] or (size[ra] == size[rb] and rb < ra):
                    ra, rb = rb, ra
                if counted[ra]:
                    for j in range(n_d):
                        if iou[ra] >= deltas[j]:
                            count[j] -= 1
                    counted[ra] = False
                if counted[rb]:
                    for j in range(n_d):
                        if iou[rb] >= deltas[j]:
                            count[j] -= 1
                    counted[rb] = False
                parent[rb] = ra
                size[ra] += size[rb]
                csum[ra] += csum[rb]
                first[ra] = min(first[ra], first[rb])
                bx0[ra] = min(bx0[ra], bx0[rb])
                by0[ra] = min(by0[ra], by0[rb])
                bx1[ra] = max(bx1[ra], bx1[rb])
                by1[ra] = max(by1[ra], by1[rb])
                if not dirty[ra]:
                    dirty[ra] = True
                    dirty_list[n_dirty] = ra
                    n_dirty += 1
                # A merge strictly grows the component: it beats what either part beat.
                if best == ra or best == rb:
                    best = ra
                elif size[ra] > size[best] or (
                    size[ra] == size[best]
                    and (csum[ra] > csum[best] or (csum[ra] == csum[best] and first[ra] < first[best]))
                ):
                    best = ra
        # 3. IoU of the roots that changed, once per level
        for i in range(n_dirty):
            r = dirty_list[i]
            dirty[r] = False
            if parent[r] != r:
                continue
            iou[r] = _best_iou(float(bx0[r]), float(by0[r]), float(bx1[r]), float(by1[r]), gt, wsol, height, width)
            for j in range(n_d):
                if iou[r] >= deltas[j]:
                    count[j] += 1
            counted[r] = True
        if best >= 0:
            t = lv - 1
            largest_box[t, 0] = bx0[best]
            largest_box[t, 1] = by0[best]
            largest_box[t, 2] = bx1[best]
            largest_box[t, 3] = by1[best]
            largest_iou[t] = iou[best]
            for j in range(n_d):
                hit_any[t, j] = count[j] > 0
    return largest_box, largest_iou, hit_any
