"""Compiled one-pass form of wsolevaluation's contour rule (numba), exact to ``cv2.findContours``.

:func:`bench.core.wsol.image_box_hits` calls :func:`box_hits` when numba is installed (the ``fast``
extra); without numba, or for the few levels this module cannot decide (see V1 below), the OpenCV
path of :mod:`bench.core.wsol` is used, which stays the reference. Results are identical (tested
against OpenCV in ``tests/test_wsol_kernel.py``).

Topology (Suzuki & Abe as OpenCV implements it, the image padded with background): the binary map
at level ``t`` is ``q > t`` (``q`` the uint8 map). ``RETR_TREE`` returns one **outer border** per
8-connected foreground component, whose ``boundingRect`` is the component's bounding box, and one
**hole border** per 4-connected background component that does not touch the image edge (a hole),
whose ``boundingRect`` is the hole's bounding box grown by one pixel on every side (the traced
foreground pixels around it). A region touching the edge is not a hole.

All levels in two union-find passes over the pixels (union by size, path halving): the foreground
grows as ``t`` falls (8-connectivity, pixels in decreasing ``q``), the holes grow as ``t`` rises
(4-connectivity, increasing ``q``); each root keeps its bounding box. At each needed level the
best IoU (wsolevaluation's inclusive formula, the same float64 division as
:func:`bench.core.wsol.multiple_iou`) over all outer and all hole boxes gives MaxBoxAccV2's hits.

**V1** (largest ``cv2.contourArea``): the area of a component's outer border polygon (through the
border pixels' centres) is a sum over 2x2 pixel windows: a window of 4 pixels of the component
with its holes filled counts 1, of 3 counts 1/2 (the border cuts it diagonally), fewer count 0.
Every window's foreground pixels belong to one component (they are mutually 8-adjacent), so each
root keeps ``local`` = that sum over its own pixels (twice the area, an integer) and its Euler number
(Gray's bit quads, 8-connectivity): a component without holes has area exactly ``local / 2``; one
with holes has area ``>= local / 2`` (each hole adds its border's area) and ``<= (w - 1)(h - 1)``
(the polygon lies in the box of its pixel centres). A hole border's area never exceeds its
component's outer area, and is strictly smaller when ``local > 0``. The winner at a level is
decided here when one component's lower bound exceeds every other component's upper bound (and it
has ``local > 0`` or no hole); otherwise (ties, e.g. several single pixels of area 0, or bounds that
overlap) the level is marked and traced by OpenCV, first of equal maxima as there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.core.jit import AVAILABLE, njit

__all__ = ["AVAILABLE", "MAX_SIDE", "level_hits", "level_boxes"]

#: the largest map side the kernel takes (pixels are packed as ``row << 16 | column``)
MAX_SIDE = 65535


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 2x2 window mask (bit0 top-left, bit1 top-right, bit2 bottom-left, bit3 bottom-right):
    twice the covered polygon area (4 pixels: 2, 3 pixels: 1) and 4 x the Euler contribution for
    8-connected foreground (1 pixel: 1, 3 pixels: -1, the two diagonals: -2)."""
    area = np.zeros(16, dtype=np.int64)
    euler = np.zeros(16, dtype=np.int64)
    for m in range(16):
        n = bin(m).count("1")
        area[m] = 2 if n == 4 else (1 if n == 3 else 0)
        euler[m] = 1 if n == 1 else (-1 if n == 3 else (-2 if m in (0b1001, 0b0110) else 0))
    return area, euler


_AREA2, _EULER4 = _tables()


@njit(cache=True, nogil=True, inline="always")
def _find(parent, i):  # noqa: ANN001, ANN202
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _best_iou(x1, y1, x2, y2, gt):  # noqa: ANN001, ANN202
    """max over GT boxes of the inclusive IoU (same arithmetic as wsol.multiple_iou)."""
    best = -1.0
    area_a = (x2 - x1 + 1) * (y2 - y1 + 1)
    for g in range(gt.shape[0]):
        iw = min(x2, gt[g, 2]) - max(x1, gt[g, 0]) + 1
        ih = min(y2, gt[g, 3]) - max(y1, gt[g, 1]) + 1
        if iw < 0:
            iw = 0
        if ih < 0:
            ih = 0
        inter = iw * ih
        union = area_a + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
        v = 0.0 if union <= 0 else inter / union
        if v > best:
            best = v
    return best


@njit(cache=True, nogil=True)
def _order(q):  # noqa: ANN001, ANN202
    """Pixels sorted by value (counting sort, raster order within a value), each as
    ``row << 16 | column`` (no division later; sides below 65,536), and the start of each value's
    run (``starts[v]:starts[v + 1]``)."""
    h, w = q.shape
    counts = np.zeros(257, dtype=np.int64)
    for r in range(h):
        for c in range(w):
            counts[q[r, c] + 1] += 1
    starts = np.cumsum(counts)
    fill = starts[:256].copy()
    order = np.empty(h * w, dtype=np.int64)
    for r in range(h):
        for c in range(w):
            v = q[r, c]
            order[fill[v]] = (r << 16) | c
            fill[v] += 1
    return order, starts


@njit(cache=True, nogil=True)
def _foreground(q, gt, needed, area2, euler4, dump, dump_boxes):  # noqa: ANN001, ANN202, PLR0912, PLR0915
    """Outer borders at every level ``t`` (foreground ``q > t``), ``t`` from 254 down to 0.

    Returns ``outer[t]`` (best IoU of the outer boxes, -1 when none), ``v1[t]`` (the largest
    contour's box ``x1, y1, x2, y2`` clipped as wsolevaluation does) and ``ok[t]`` (False: V1 not
    decided here). When ``dump >= 0`` the boxes of level ``dump`` are written to ``dump_boxes``;
    their count is returned. Pixels live in a grid padded by one background pixel (index
    ``(r + 1) * (w + 2) + c + 1``), so neighbours need no bounds checks."""
    h, w = q.shape
    w2 = w + 2
    n = (h + 2) * w2
    order, starts = _order(q)
    offs = np.array([-w2 - 1, -w2, -w2 + 1, 1, w2 + 1, w2, w2 - 1, -1], dtype=np.int64)  # ring order
    parent = np.full(n, -1, dtype=np.int32)
    size = np.zeros(n, dtype=np.int32)
    bx1 = np.zeros(n, dtype=np.int32)
    by1 = np.zeros(n, dtype=np.int32)
    bx2 = np.zeros(n, dtype=np.int32)
    by2 = np.zeros(n, dtype=np.int32)
    loc = np.zeros(n, dtype=np.int32)
    eul = np.zeros(n, dtype=np.int32)
    active = np.empty(n, dtype=np.int32)
    pos = np.full(n, -1, dtype=np.int32)
    nact = 0
    win = np.zeros(n, dtype=np.uint8)  # window P: padded pixels P-w2-1 (bit0), P-w2 (1), P-1 (2), P (3)
    outer = np.full(256, -1.0)
    v1 = np.zeros((256, 4), dtype=np.int64)
    ok = np.zeros(256, dtype=np.bool_)
    ndump = 0
    for v in range(255, 0, -1):
        for k in range(starts[v], starts[v + 1]):
            r = order[k] >> 16
            c = order[k] & 0xFFFF
            p = (r + 1) * w2 + c + 1
            root = -1  # p joins the first present neighbour's component; a new one if none
            # ring neighbours in turn are 4-adjacent, so a run of present ones is one component
            # already: one find per run (a full ring is one run, looked up at its first pixel)
            prev = parent[p + offs[7]] >= 0
            full = True
            for j in range(8):
                pn = parent[p + offs[j]]
                here = pn >= 0
                if not here:
                    full = False
                start = here and not prev
                prev = here
                if not (start or (j == 7 and full)) or pn == root:
                    continue
                rb = _find(parent, pn)
                if rb == root:
                    continue
                if root < 0:
                    root = rb
                    parent[p] = rb
                    size[rb] += 1
                    bx1[rb] = min(bx1[rb], c)
                    by1[rb] = min(by1[rb], r)
                    bx2[rb] = max(bx2[rb], c)
                    by2[rb] = max(by2[rb], r)
                    continue
                ra = root
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra
                size[ra] += size[rb]
                bx1[ra] = min(bx1[ra], bx1[rb])
                by1[ra] = min(by1[ra], by1[rb])
                bx2[ra] = max(bx2[ra], bx2[rb])
                by2[ra] = max(by2[ra], by2[rb])
                loc[ra] += loc[rb]
                eul[ra] += eul[rb]
                last = active[nact - 1]
                active[pos[rb]] = last
                pos[last] = pos[rb]
                pos[rb] = -1
                nact -= 1
                root = ra
            if root < 0:
                root = p
                parent[p] = p
                size[p] = 1
                bx1[p] = c
                bx2[p] = c
                by1[p] = r
                by2[p] = r
                loc[p] = 0
                eul[p] = 0
                active[nact] = p
                pos[p] = nact
                nact += 1
            for j in range(4):  # p is bit 3 of window p, 2 of p + 1, 1 of p + w2, 0 of p + w2 + 1
                wi = p + (1 if j == 2 or j == 0 else 0) + (w2 if j < 2 else 0)
                old = win[wi]
                new = old | (1 << j)
                win[wi] = new
                loc[root] += area2[new] - area2[old]
                eul[root] += euler4[new] - euler4[old]
        t = v - 1
        if dump == t:
            for a in range(nact):
                s = active[a]
                dump_boxes[ndump, 0] = bx1[s]
                dump_boxes[ndump, 1] = by1[s]
                dump_boxes[ndump, 2] = min(bx2[s] + 1, w - 1)
                dump_boxes[ndump, 3] = min(by2[s] + 1, h - 1)
                ndump += 1
        if not needed[t]:
            continue
        if nact == 0:
            outer[t] = _best_iou(0, 0, 0, 0, gt)
            ok[t] = True
            continue
        best = -1.0
        top = -1
        topl = -1
        ties = 0
        for a in range(nact):
            s = active[a]
            iou = _best_iou(bx1[s], by1[s], min(bx2[s] + 1, w - 1), min(by2[s] + 1, h - 1), gt)
            if iou > best:
                best = iou
            if loc[s] > topl:
                topl = loc[s]
                top = s
                ties = 1
            elif loc[s] == topl:
                ties += 1
        outer[t] = best
        decided = ties == 1 and (eul[top] == 4 or topl > 0)
        if decided:
            for a in range(nact):
                s = active[a]
                if s == top:
                    continue
                upper = loc[s] if eul[s] == 4 else 2 * (bx2[s] - bx1[s]) * (by2[s] - by1[s])
                if upper >= topl:
                    decided = False
                    break
        ok[t] = decided
        if decided:
            v1[t, 0] = bx1[top]
            v1[t, 1] = by1[top]
            v1[t, 2] = min(bx2[top] + 1, w - 1)
            v1[t, 3] = min(by2[top] + 1, h - 1)
    if needed[255]:  # q > 255 is never true: no contour
        outer[255] = _best_iou(0, 0, 0, 0, gt)
        ok[255] = True
    return outer, v1, ok, ndump


@njit(cache=True, nogil=True)
def _holes(q, gt, needed, dump, dump_boxes):  # noqa: ANN001, ANN202, PLR0912
    """Hole borders at every level ``t`` (background ``q <= t``), ``t`` from 0 up: ``hole[t]`` the
    best IoU of the hole boxes (-1 when no hole). Padded grid as in :func:`_foreground`."""
    h, w = q.shape
    w2 = w + 2
    n = (h + 2) * w2
    order, starts = _order(q)
    offs = np.array([-w2, -1, 1, w2], dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int32)
    size = np.zeros(n, dtype=np.int32)
    bx1 = np.zeros(n, dtype=np.int32)
    by1 = np.zeros(n, dtype=np.int32)
    bx2 = np.zeros(n, dtype=np.int32)
    by2 = np.zeros(n, dtype=np.int32)
    edge = np.zeros(n, dtype=np.bool_)
    active = np.empty(n, dtype=np.int32)  # the roots that do not touch the edge
    pos = np.full(n, -1, dtype=np.int32)
    nact = 0
    hole = np.full(256, -1.0)
    ndump = 0
    for v in range(0, 255):
        for k in range(starts[v], starts[v + 1]):
            r = order[k] >> 16
            c = order[k] & 0xFFFF
            p = (r + 1) * w2 + c + 1
            on_edge = r == 0 or c == 0 or r == h - 1 or c == w - 1
            root = -1  # p joins the first present neighbour's region; a new one if none
            for j in range(4):
                nb = p + offs[j]
                pn = parent[nb]
                if pn < 0 or pn == root:
                    continue
                rb = _find(parent, pn)
                if rb == root:
                    continue
                if root < 0:
                    root = rb
                    parent[p] = rb
                    size[rb] += 1
                    bx1[rb] = min(bx1[rb], c)
                    by1[rb] = min(by1[rb], r)
                    bx2[rb] = max(bx2[rb], c)
                    by2[rb] = max(by2[rb], r)
                    continue
                ra = root
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                parent[rb] = ra
                size[ra] += size[rb]
                bx1[ra] = min(bx1[ra], bx1[rb])
                by1[ra] = min(by1[ra], by1[rb])
                bx2[ra] = max(bx2[ra], bx2[rb])
                by2[ra] = max(by2[ra], by2[rb])
                if pos[rb] >= 0:  # rb is no root any more
                    last = active[nact - 1]
                    active[pos[rb]] = last
                    pos[last] = pos[rb]
                    pos[rb] = -1
                    nact -= 1
                if edge[rb] and not edge[ra]:  # the merged region touches the edge: no hole
                    edge[ra] = True
                    last = active[nact - 1]
                    active[pos[ra]] = last
                    pos[last] = pos[ra]
                    pos[ra] = -1
                    nact -= 1
                root = ra
            if root < 0:
                parent[p] = p
                size[p] = 1
                bx1[p] = c
                bx2[p] = c
                by1[p] = r
                by2[p] = r
                edge[p] = on_edge
                if not on_edge:
                    active[nact] = p
                    pos[p] = nact
                    nact += 1
            elif on_edge and not edge[root]:
                edge[root] = True
                last = active[nact - 1]
                active[pos[root]] = last
                pos[last] = pos[root]
                pos[root] = -1
                nact -= 1
        t = v
        if dump == t:
            for a in range(nact):
                s = active[a]
                dump_boxes[ndump, 0] = bx1[s] - 1
                dump_boxes[ndump, 1] = by1[s] - 1
                dump_boxes[ndump, 2] = min(bx2[s] + 2, w - 1)
                dump_boxes[ndump, 3] = min(by2[s] + 2, h - 1)
                ndump += 1
        if not needed[t]:
            continue
        best = -1.0
        for a in range(nact):
            s = active[a]
            iou = _best_iou(bx1[s] - 1, by1[s] - 1, min(bx2[s] + 2, w - 1), min(by2[s] + 2, h - 1), gt)
            if iou > best:
                best = iou
        hole[t] = best
    return hole, ndump


def quantise(scoremap: np.ndarray) -> np.ndarray:
    """``uint8(m * 255)`` of a normalised map, wsolevaluation's quantisation (as in wsol.py)."""
    return (scoremap * 255).astype(np.uint8)


def level_boxes(q: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The clipped ``(x1, y1, x2, y2)`` boxes of the outer borders and of the hole borders of the
    binary map ``q > t`` (``q`` uint8), each ``(k, 4)`` int64, sorted (a set; for tests)."""
    q = np.ascontiguousarray(q, dtype=np.uint8)
    gt = np.zeros((1, 4), dtype=np.int64)
    needed = np.zeros(256, dtype=np.bool_)
    out = np.zeros((q.size, 4), dtype=np.int64)
    k = _foreground(q, gt, needed, _AREA2, _EULER4, t, out)[3]
    outer = out[:k].copy()
    k = _holes(q, gt, needed, t, out)[1]
    holes = out[:k].copy()
    return outer[np.lexsort(outer.T[::-1])], holes[np.lexsort(holes.T[::-1])]


def level_hits(
    q: np.ndarray, gt: np.ndarray, levels: np.ndarray, deltas: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The compiled passes for the binary maps ``q > t``, ``t in levels`` (uint8 ``q``, GT boxes
    ``(n, 4)`` at the map's size). Returns ``(v1_box, v1_ok, v2_best)`` indexed by level 0..255:
    the largest contour's box where decided (``v1_ok``), the best IoU over all contours, and the
    per-level best IoU of the outer boxes alone (for tests)."""
    q = np.ascontiguousarray(q, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    needed = np.zeros(256, dtype=np.bool_)
    needed[np.asarray(levels, dtype=np.int64)] = True
    dummy = np.zeros((1, 4), dtype=np.int64)
    outer, v1, ok, _ = _foreground(q, gt, needed, _AREA2, _EULER4, -1, dummy)
    hole, _ = _holes(q, gt, needed, -1, dummy)
    return v1, ok, np.maximum(outer, hole), outer
