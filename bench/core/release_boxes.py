"""Box rule ``cam_release``: the box generator behind the CAM authors' released numbers.

The CAM release (Zhou et al., CVPR 2016; ``generate_bbox.m``, ``ILSVRC_evaluate_bbox.m`` and the
C/C++ program ``bboxgenerator/dt_box`` built from ``dt_box.cpp`` + ``dt.c``) turns a heatmap into
boxes in seven steps. Each step is one function here, vectorised with numpy/scipy, documented
with the release's own arithmetic:

(a) :func:`release_gray` -- the CAM divided by its maximum and written as an 8-bit image,
    ``g = round(255 * clip(M / max(M), 0, 1))`` (MATLAB ``imwrite`` of a single image in
    [0, 1]: ``im2uint8``, rounding half away from zero, negatives saturate to 0). **The release
    went through a JPEG file** (``imwrite(..., '.jpg')`` then ``cvLoadImage(file, 0)``); JPEG is
    lossy and we skip it, so ``g`` here is the map the JPEG was made from. We compute it in
    float64 (the release in MATLAB single); the two can differ only at exact ``.5`` ties.
(b) :func:`release_masks` -- for each of the three 8-bit thresholds ``t in (20, 100, 110)``
    (``bbox_threshold`` of the release): ``cvThreshold(g, t, 255, CV_THRESH_BINARY)``, i.e.
    foreground ``g > t`` (strict).
(c) :func:`release_dt_mask` -- ``dt.c``'s ``dt_binary`` then ``cvThreshold(.., 10, ..)``: the
    exact Euclidean distance (Felzenszwalb-Huttenlocher lower envelope of parabolas, foreground
    = ``1e20``, background = 0) of every pixel to the nearest *background pixel inside the
    image*. The image border is NOT background: the 1-D transforms only ever look at samples
    inside the image, so a blob touching the border is far from "background" there. (OpenCV's
    ``distanceTransform`` is not used by the release.) ``scipy.ndimage.distance_transform_edt``
    has the same semantics (distance to the nearest zero *element of the array*; nothing
    outside counts) and returns ``sqrt`` of the exact integer squared distance in float64,
    which is what ``dt.c`` computes too (bit-identical: checked against the release's ``dt.c``
    compiled and run on 3,000 random masks; the tests compare with a brute-force transform).
    Only the foreground's bounding box grown by one pixel is transformed (same distances,
    cheaper). The distances are then written back to 8 bits by ``double_to_image``:
    ``ROUND(d * 255 / (max - min))`` with ``min = 0`` (note: ``d * scale``, not
    ``(d - min) * scale``), ``ROUND(s) = (int)(s + 0.5)``, clamped to [0, 255]; pixels ``> 10``
    are kept, i.e. ``d * 255 / max(d) >= 10.5``. Special cases, reproduced: an empty foreground
    leaves the image all 0 (``min == max`` returns early); a foreground covering the whole image
    has no background at all: every value is about ``1e10``; if ``dt.c``'s ``1e20`` arithmetic
    rounds them all to the same double (every size we tried, up to 2000 x 2000), the binary
    image is left as it was (all kept); otherwise ``scale`` would be huge, ``(int)`` would
    overflow to ``INT_MIN`` on x86-64 and ``BOUND_8U`` would give 0. `_all_foreground_dt_mask`
    runs ``dt.c``'s exact arithmetic for that case, whichever way it goes.
(d) :func:`release_contour_rects` -- ``cv::findContours(mask, CV_RETR_CCOMP,
    CV_CHAIN_APPROX_SIMPLE)`` and ``cv::boundingRect`` of EVERY contour, outer and hole alike:

    * foreground is 8-connected, background 4-connected (Suzuki-Abe border following);
    * each 8-connected foreground component gives one outer contour whose bounding rect is the
      component's bounding box, ``(x, y, w, h)`` with ``w = xmax - xmin + 1``;
    * each hole -- a 4-connected background component not 4-connected to the outside -- gives one
      hole contour made of the foreground pixels 4-adjacent to the hole, so its bounding rect is
      the hole's bounding box grown by one pixel on each side;
    * **border**: the OpenCV the release was built against (OpenCV 2 C API, ``pkg-config
      opencv``, 2016) sets the 1-pixel frame of the image to 0 in place before tracing
      (``/* make zero borders */`` in ``cvStartFindContours``), so foreground on the first/last
      row/column is erased first (``zero_border=True``, the default). Later OpenCV (3.2 on, to
      our knowledge; 4.x and 5.x certainly) pads the image with zeros instead and keeps the
      frame (``zero_border=False``; checked against OpenCV 5.0's ``findContours``);
    * (rect sets and order checked against OpenCV 5.0's ``findContours`` on 6,000 random masks,
      both border modes; steps (d)-(f) end to end against the release's C++ clamp/sort/merge
      compiled with g++ 12 on 480 smooth maps: identical)
    * order: contours come out in OpenCV's tree order: outer contours in reverse order of
      discovery (raster order of their first pixel), each followed by its holes in reverse
      order of discovery (``cvInsertNodeIntoTree`` prepends; ``cvTreeToNodeSeq`` walks depth
      first). The order only matters for ties in (e).

    Then ``LIMIT`` clamps each rect with the *unclamped* ``x``/``y``:
    ``x' = clip(x, 0, W-5)``, ``y' = clip(y, 0, H-5)``, ``w' = LIMIT(w, 0, W-x-5)``,
    ``h' = LIMIT(h, 0, H-y-5)`` where ``LIMIT(v, L, R) = L if v < L else (R if v > R else v)``
    -- with ``R < L`` (a rect starting within 5 px of the right/bottom edge) ``w'`` becomes
    negative, as in the release.
(e) :func:`release_sort` -- all rects of the three thresholds (threshold 20's first) sorted by
    ``w * h``, largest first: ``std::sort`` with ``a.w*a.h > b.w*b.h``. ``std::sort`` is NOT
    stable: libstdc++ runs an introsort above 16 elements, so equal areas of different rects
    come out in an order a stable sort does not reproduce (it changed the loose/tight pair on 1
    of 480 random smooth maps). We port libstdc++'s algorithm (GCC >= 4.9; checked against
    g++ 12) and apply its exact permutation. Up to 16 rects it is an insertion sort, i.e.
    stable. GCC 4.5-4.8 picked the pivot differently; :attr:`ReleaseTrace.order_exact` is False
    whenever more than 16 rects include equal areas of different rects (version-dependent).
(f) :func:`release_merge` -- ``mergeBBox``: for ``i`` then ``j > i``, rect ``j`` is erased when
    its overlap with rect ``i`` exceeds ``int(0.5 * max(area_i, area_j))`` (overlap of
    ``[x, x+w) x [y, y+h)``); the loop then increments ``j``, so the rect that moved into slot
    ``j`` is never compared with rect ``i`` (the release's skip quirk, reproduced).
(g) :func:`release_xyxy` -- ``fprintf("%d %d %d %d ", x, y, w, h)`` then MATLAB
    ``[x, y, x+w, y+h]`` with min/max per axis. NOTE: ``x + w`` is one past the last pixel of
    the contour (the release feeds these numbers to the devkit, which reads them as inclusive
    coordinates), and they are 0-based OpenCV pixel indices. We output exactly these numbers.
    ``loose`` = the first box, ``tight`` = the second. (The release has no fallback: MATLAB
    would stop with an index error on a single box; we repeat the first box and set
    :attr:`ReleaseTrace.single_box`.)

Degenerate maps (``max(M) <= 0``): nothing to segment; both boxes are the whole image
``(0, 0, W-1, H-1)`` (the harness's convention, docs/protocol.md) and ``degenerate`` is True.
For ``max(M) > 0`` the maximum pixel has ``g = 255`` so every threshold has foreground and at
least one box survives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from bench.core.maps import check_map

__all__ = [
    "RELEASE_THRESHOLDS",
    "DT_KEEP_ABOVE",
    "BORDER_MARGIN",
    "ReleaseTrace",
    "release_gray",
    "release_masks",
    "release_dt_mask",
    "release_contour_rects",
    "release_clamp",
    "release_sort",
    "release_merge",
    "release_xyxy",
    "cam_release_trace",
    "cam_release_boxes",
    "cam_release_rule",
]

#: The release's 8-bit thresholds (``bbox_threshold = [20, 100, 110]``).
RELEASE_THRESHOLDS: tuple[int, int, int] = (20, 100, 110)
#: Distance-transform pixels kept: 8-bit value strictly above this.
DT_KEEP_ABOVE: int = 10
#: ``LIMIT(.., W - 5)``: rects are kept 5 px away from the right and bottom edges.
BORDER_MARGIN: int = 5
#: ``dt.c``'s INF for foreground samples.
_DT_INF: float = 1e20
#: Largest number of rects ``std::sort`` (libstdc++) sorts by plain, stable, insertion sort.
_STD_SORT_INSERTION_MAX: int = 16

_EIGHT = np.ones((3, 3), dtype=bool)
_FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class ReleaseTrace:
    """Every intermediate of :func:`cam_release_trace`, for debugging and tests.

    Rects are ``int64 (n, 4)`` ``(x, y, w, h)`` as OpenCV gives them; boxes ``int64 (n, 4)``
    ``(x1, y1, x2, y2)`` as the release outputs them (``x2 = x + w``, see the module docstring).

    Attributes:
        gray: step (a), uint8 ``(H, W)``.
        masks: step (b), one bool ``(H, W)`` per threshold.
        dt_masks: step (c), one bool ``(H, W)`` per threshold.
        rects: step (d), all contours' bounding rects, threshold by threshold, in OpenCV order.
        rect_threshold: ``(n,)`` index of the threshold each rect comes from.
        rect_is_hole: ``(n,)`` True for hole contours.
        clamped: step (d) after ``LIMIT``, same order as ``rects``.
        sorted_rects: step (e).
        kept: step (f), the rects that survive the merge, in order.
        boxes: step (g), ``kept`` as release boxes.
        loose: the first box; tight: the second (the first again if there is only one).
        single_box: only one rect survived (the release itself would have failed).
        order_exact: False when more than 16 rects include equal areas of different rects
            (libstdc++'s ``std::sort`` may order those differently; see step (e)).
        degenerate: ``max(M) <= 0``; everything else is empty and both boxes are the image.
    """

    gray: np.ndarray
    masks: tuple[np.ndarray, ...]
    dt_masks: tuple[np.ndarray, ...]
    rects: np.ndarray
    rect_threshold: np.ndarray
    rect_is_hole: np.ndarray
    clamped: np.ndarray
    sorted_rects: np.ndarray
    kept: np.ndarray
    boxes: np.ndarray
    loose: np.ndarray
    tight: np.ndarray
    single_box: bool
    order_exact: bool
    degenerate: bool


# --------------------------------------------------------------------------- (a) 8-bit image


def release_gray(cam: np.ndarray) -> np.ndarray:
    """Step (a): ``uint8 g = floor(255 * clip(M / max(M), 0, 1) + 0.5)``.

    MATLAB's ``im2uint8`` (round half away from zero; values below 0 saturate to 0) applied to
    ``M ./ max(M(:))``, in float64. The release's JPEG round trip is skipped (see module docs).

    Raises:
        ValueError: bad map, or ``max(M) <= 0`` (nothing to normalise by; callers treat that
            map as degenerate before calling this).
    """
    cam = check_map(cam, finite=True)
    mx = float(cam.max())
    if not mx > 0.0:
        raise ValueError(f"release_gray needs max(M) > 0, got {mx}")
    x = np.clip(cam.astype(np.float64) / mx, 0.0, 1.0)
    return np.floor(255.0 * x + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- (b) thresholds


def release_masks(gray: np.ndarray, thresholds: Sequence[int] = RELEASE_THRESHOLDS) -> tuple[np.ndarray, ...]:
    """Step (b): ``cvThreshold(g, t, 255, CV_THRESH_BINARY)`` -> foreground ``g > t`` per threshold."""
    gray = np.asarray(gray)
    return tuple(gray > int(t) for t in thresholds)


# --------------------------------------------------------------------------- (c) distance transform


def _fh_dt_row(f: Sequence[float]) -> list[float]:
    """``dt.c``'s ``dt_row``: 1-D squared distance transform of samples ``f`` (literal port).

    Python floats are IEEE doubles with the same rounding as the compiled C (x86-64 SSE2, no
    FMA), so this reproduces ``dt.c`` bit for bit, including its ``1e20`` "infinities".
    """
    n = len(f)
    d = [0.0] * n
    v = [0] * n
    z = [0.0] * (n + 1)
    k = 0
    v[0] = 0
    z[0] = -_DT_INF
    z[1] = +_DT_INF
    for q in range(1, n):
        s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / float(2 * q - 2 * v[k])
        while s <= z[k]:
            k -= 1
            s = ((f[q] + q * q) - (f[v[k]] + v[k] * v[k])) / float(2 * q - 2 * v[k])
        k += 1
        v[k] = q
        z[k] = s
        z[k + 1] = +_DT_INF
    k = 0
    for q in range(n):
        while z[k + 1] < q:
            k += 1
        d[q] = float((q - v[k]) * (q - v[k])) + f[v[k]]
    return d


def _double_to_image(m: np.ndarray) -> np.ndarray | None:
    """``dt.c``'s ``double_to_image`` on float64 distances ``m``; None when it returns early.

    ``min == max``: the C function returns without writing (the caller's image is unchanged).
    Else ``s = m * (255 / (max - min))``, ``t = (int)(s + 0.5)`` -- out of the int range x86-64
    gives ``INT_MIN`` -- and ``BOUND_8U(t)`` clamps to [0, 255].
    """
    mi = float(m.min())
    ma = float(m.max())
    if mi == ma:
        return None
    scale = 255.0 / (ma - mi)
    t = m * scale + 0.5
    in_range = (t > -2147483649.0) & (t < 2147483648.0)
    ti = np.where(in_range, np.trunc(np.where(in_range, t, 0.0)), -2147483648.0)
    return np.clip(ti, 0, 255).astype(np.uint8)


def _all_foreground_dt_mask(height: int, width: int) -> np.ndarray:
    """Step (c) when every pixel is foreground: which pixels ``dt.c`` + threshold 10 keep.

    Runs ``dt.c``'s arithmetic exactly: the column pass on an all-``1e20`` column (every column
    is the same), then the row pass on each distinct row value, ``sqrt``, ``double_to_image``.
    In practice every value rounds to the same double and the binary image is left as it was
    (all kept); the general path (``(int)`` overflow -> ``INT_MIN`` -> 0) is kept for fidelity.
    """
    col = _fh_dt_row([_DT_INF] * height)
    rows = {c: _fh_dt_row([c] * width) for c in set(col)}
    m = np.sqrt(np.array([rows[c] for c in col], dtype=np.float64))
    img = _double_to_image(m)
    if img is None:  # unchanged binary image: all 255
        return np.ones((height, width), dtype=bool)
    return img > DT_KEEP_ABOVE


def release_dt_mask(fg: np.ndarray) -> np.ndarray:
    """Step (c): pixels whose 8-bit rescaled distance to the nearest background pixel is > 10.

    Args:
        fg: bool ``(H, W)`` foreground of one threshold (step b).

    Returns:
        bool ``(H, W)``: ``ROUND(d * 255 / max(d)) > 10`` where ``d`` is the exact Euclidean
        distance to the nearest background pixel inside the image (the border is not
        background). Empty foreground -> all False; whole-image foreground -> see
        `_all_foreground_dt_mask`.
    """
    fg = np.asarray(fg, dtype=bool)
    n_fg = int(fg.sum())
    if n_fg == 0:
        return np.zeros(fg.shape, dtype=bool)
    if n_fg == fg.size:
        return _all_foreground_dt_mask(*fg.shape)
    # Only the foreground's bounding box grown by one pixel is needed: that ring is background
    # (or outside the image) and, for any pixel inside, the nearest ring pixel is at least as
    # close as any background pixel beyond it. Distances, their max, hence the 8-bit image are
    # unchanged; high thresholds get much cheaper.
    rows = np.flatnonzero(fg.any(axis=1))
    cols = np.flatnonzero(fg.any(axis=0))
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, fg.shape[0])
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, fg.shape[1])
    d = ndimage.distance_transform_edt(fg[y0:y1, x0:x1])  # float64 sqrt(exact int d^2); 0 on bg
    img = _double_to_image(d)
    assert img is not None  # min = 0 < max: the crop has background and foreground
    out = np.zeros(fg.shape, dtype=bool)
    out[y0:y1, x0:x1] = img > DT_KEEP_ABOVE
    return out


# --------------------------------------------------------------------------- (d) contours


def _first_index_and_bbox(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label 1..n: raster index of its first pixel and its bbox ``(x0, y0, x1, y1)`` inclusive.

    The first pixel of a label is in the top row of its bbox, at the first column of that row
    holding the label (one short row scan per label; labels are few).
    """
    slices = ndimage.find_objects(labels, max_label=n)
    bbox = np.array(
        [[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for s in slices], dtype=np.int64
    ).reshape(n, 4)
    width = labels.shape[1]
    firsts = np.array(
        [
            int(bbox[i, 1]) * width + int(bbox[i, 0])
            + int(np.argmax(labels[bbox[i, 1], bbox[i, 0] : bbox[i, 2] + 1] == i + 1))
            for i in range(n)
        ],
        dtype=np.int64,
    )  # fmt: skip
    return firsts, bbox


def release_contour_rects(mask: np.ndarray, zero_border: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Step (d), before the clamp: bounding rects of every contour, as ``findContours`` lists them.

    Args:
        mask: bool ``(H, W)`` (step c).
        zero_border: erase the 1-pixel image frame first, as OpenCV < 3.2 does in place
            (the release); False = OpenCV >= 3.2, which pads instead.

    Returns:
        ``(rects int64 (n, 4) (x, y, w, h), is_hole bool (n,))`` in OpenCV's output order:
        outer contours by decreasing raster index of their component's first pixel, each
        followed by its holes by decreasing raster index of the hole's first pixel.
    """
    m = np.array(mask, dtype=bool)
    height, width = m.shape
    if zero_border:
        m[0, :] = m[-1, :] = False
        m[:, 0] = m[:, -1] = False
    fg_lab, n_fg = ndimage.label(m, structure=_EIGHT)
    if n_fg == 0:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=bool)
    fg_first, fg_box = _first_index_and_bbox(fg_lab, n_fg)

    # Background, 4-connected, with a frame of background around it: the frame's component is
    # the outside; every other background component is a hole.
    bg = np.ones((height + 2, width + 2), dtype=bool)
    bg[1:-1, 1:-1] = ~m
    bg_lab, n_bg = ndimage.label(bg, structure=_FOUR)
    outside = bg_lab[0, 0]
    inner = bg_lab[1:-1, 1:-1]
    hole_ids = np.setdiff1d(np.arange(1, n_bg + 1), [outside])
    if hole_ids.size:
        # Relabel holes 1..nh (outside and foreground -> 0) to get their first pixels and bboxes.
        remap = np.zeros(n_bg + 1, dtype=np.int64)
        remap[hole_ids] = np.arange(1, hole_ids.size + 1)
        hole_lab = remap[inner]
        hole_first, hole_box = _first_index_and_bbox(hole_lab, hole_ids.size)
        # The hole's first pixel has a foreground left neighbour: the enclosing component.
        hy, hx = np.divmod(hole_first, width)
        hole_parent = fg_lab[hy, hx - 1]
    else:
        hole_first = np.zeros(0, dtype=np.int64)
        hole_box = np.zeros((0, 4), dtype=np.int64)
        hole_parent = np.zeros(0, dtype=np.int64)

    # Outer rect = component bbox; hole rect = hole bbox grown by 1 on each side.
    outer_rects = np.column_stack(
        [fg_box[:, 0], fg_box[:, 1], fg_box[:, 2] - fg_box[:, 0] + 1, fg_box[:, 3] - fg_box[:, 1] + 1]
    )
    hole_rects = np.column_stack(
        [hole_box[:, 0] - 1, hole_box[:, 1] - 1, hole_box[:, 2] - hole_box[:, 0] + 3,
         hole_box[:, 3] - hole_box[:, 1] + 3]
    ).reshape(-1, 4)  # fmt: skip

    # Order: (parent's first pixel desc, outer before its holes, hole's first pixel desc).
    group = np.concatenate([fg_first, fg_first[hole_parent - 1]])
    is_hole = np.concatenate([np.zeros(n_fg, dtype=bool), np.ones(hole_ids.size, dtype=bool)])
    own = np.concatenate([fg_first, hole_first])
    order = np.lexsort((-own, is_hole, -group))
    rects = np.concatenate([outer_rects, hole_rects]).astype(np.int64)[order]
    return rects, is_hole[order]


def release_clamp(rects: np.ndarray, height: int, width: int) -> np.ndarray:
    """Step (d) ``LIMIT``: ``x' = LIMIT(x, 0, W-5)``, ``y' = LIMIT(y, 0, H-5)``,
    ``w' = LIMIT(w, 0, W-x-5)``, ``h' = LIMIT(h, 0, H-y-5)`` with the unclamped ``x``, ``y``.

    ``LIMIT(v, L, R) = L if v < L else (R if v > R else v)`` (so ``R < L`` can give ``R < 0``).
    """
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    x, y, w, h = r.T

    def limit(v: np.ndarray, lo: np.ndarray | int, hi: np.ndarray | int) -> np.ndarray:
        return np.where(v < lo, lo, np.where(v > hi, hi, v))

    return np.column_stack(
        [
            limit(x, 0, width - BORDER_MARGIN),
            limit(y, 0, height - BORDER_MARGIN),
            limit(w, 0, width - x - BORDER_MARGIN),
            limit(h, 0, height - y - BORDER_MARGIN),
        ]
    ).astype(np.int64)


# --------------------------------------------------------------------------- (e) sort


def _libstdcxx_sort(keys: Sequence[int]) -> list[int]:
    """The permutation ``std::sort`` (libstdc++, GCC >= 4.9) applies for ``comp(a, b) = key a > key b``.

    A port of libstdc++'s introsort (``__introsort_loop`` with ``_S_threshold = 16``, pivot =
    median of ``first + 1``, ``mid``, ``last - 1`` moved to ``first``, ``__unguarded_partition``,
    heapsort past ``2 * floor(log2(n))`` levels) and ``__final_insertion_sort``, on indices.
    Elements with equal keys end up in exactly the order the C++ code leaves them in (checked
    against g++ 12). GCC 4.5-4.8 chose the pivot among ``first``, ``mid``, ``last - 1``
    instead, so with more than 16 elements and ties their order can differ.
    """
    a = list(range(len(keys)))
    k = list(keys)

    def comp(i: int, j: int) -> bool:  # elements are indices into keys
        return k[i] > k[j]

    def push_heap(first: int, hole: int, top: int, value: int) -> None:
        parent = (hole - 1) // 2
        while hole > top and comp(a[first + parent], value):
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        a[first + hole] = value

    def adjust_heap(first: int, hole: int, length: int, value: int) -> None:
        top = hole
        child = hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if comp(a[first + child], a[first + child - 1]):
                child -= 1
            a[first + hole] = a[first + child]
            hole = child
        if (length & 1) == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        push_heap(first, hole, top, value)

    def heap_sort(first: int, last: int) -> None:  # __partial_sort(first, last, last)
        length = last - first
        if length >= 2:  # __make_heap
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, a[first + parent])
                if parent == 0:
                    break
                parent -= 1
        while last - first > 1:  # __sort_heap / __pop_heap
            last -= 1
            value = a[last]
            a[last] = a[first]
            adjust_heap(first, 0, last - first, value)

    def move_median_to_first(result: int, x: int, y: int, z: int) -> None:
        if comp(a[x], a[y]):
            if comp(a[y], a[z]):
                pick = y
            elif comp(a[x], a[z]):
                pick = z
            else:
                pick = x
        elif comp(a[x], a[z]):
            pick = x
        elif comp(a[y], a[z]):
            pick = z
        else:
            pick = y
        a[result], a[pick] = a[pick], a[result]

    def unguarded_partition(first: int, last: int, pivot: int) -> int:
        while True:
            while comp(a[first], a[pivot]):
                first += 1
            last -= 1
            while comp(a[pivot], a[last]):
                last -= 1
            if not first < last:
                return first
            a[first], a[last] = a[last], a[first]
            first += 1

    def introsort_loop(first: int, last: int, depth: int) -> None:
        while last - first > _STD_SORT_INSERTION_MAX:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            mid = first + (last - first) // 2
            move_median_to_first(first, first + 1, mid, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def linear_insert(pos: int) -> None:  # __unguarded_linear_insert
        value = a[pos]
        nxt = pos - 1
        while comp(value, a[nxt]):
            a[pos] = a[nxt]
            pos = nxt
            nxt -= 1
        a[pos] = value

    def insertion_sort(first: int, last: int) -> None:
        for i in range(first + 1, last):
            if comp(a[i], a[first]):
                value = a[i]
                a[first + 1 : i + 1] = a[first:i]
                a[first] = value
            else:
                linear_insert(i)

    n = len(a)
    if n > 1:
        introsort_loop(0, n, 2 * (n.bit_length() - 1))
        if n > _STD_SORT_INSERTION_MAX:
            insertion_sort(0, _STD_SORT_INSERTION_MAX)
            for i in range(_STD_SORT_INSERTION_MAX, n):
                linear_insert(i)
        else:
            insertion_sort(0, n)
    return a


def release_sort(rects: np.ndarray, method: str = "libstdc++") -> tuple[np.ndarray, bool]:
    """Step (e): rects by decreasing ``w * h``. Returns ``(sorted, order_exact)``.

    Args:
        rects: ``(n, 4)`` clamped rects, in contour order.
        method: ``'libstdc++'`` (default): ``std::sort``'s exact permutation (GCC >= 4.9, see
            :func:`_libstdcxx_sort`); ``'stable'``: a stable sort (identical for <= 16 rects,
            where libstdc++ only runs its insertion sort).

    ``order_exact`` is False when there are more than 16 rects and two *different* rects have
    the same area: their order then depends on the sort (and on the libstdc++ version the
    release binary was built with).
    """
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    area = r[:, 2] * r[:, 3]
    if method == "libstdc++":
        order = np.array(_libstdcxx_sort(area.tolist()), dtype=np.int64)
    elif method == "stable":
        order = np.argsort(-area, kind="stable")
    else:
        raise ValueError(f"sort method must be 'libstdc++' or 'stable', got {method!r}")
    exact = True
    if len(r) > _STD_SORT_INSERTION_MAX:
        uniq = np.unique(r, axis=0)
        exact = np.unique(uniq[:, 2] * uniq[:, 3]).size == len(uniq)
    return r[order], bool(exact)


# --------------------------------------------------------------------------- (f) merge


def _big_overlap_matrix(r: np.ndarray) -> np.ndarray:
    """``big_overlap(a, b)`` for every pair: ``overlap > (int)(max(area_a, area_b) * 0.5)``."""
    x1, y1 = r[:, 0], r[:, 1]
    x2, y2 = r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]
    area = r[:, 2] * r[:, 3]
    t = np.trunc(np.maximum(area[:, None], area[None, :]).astype(np.float64) * 0.5).astype(np.int64)
    xo = np.maximum(0, np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]))
    yo = np.maximum(0, np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]))
    return xo * yo > t


def release_merge(rects: np.ndarray) -> np.ndarray:
    """Step (f): ``mergeBBox`` on sorted rects, with the release's skip quirk.

    The pairwise test is vectorised; the loop over indices is the release's own::

        for (i = 0; i < n; ++i)
            for (j = i + 1; j < n; ++j)
                if (big_overlap(b[i], b[j])) b.erase(b.begin() + j);   // then ++j: skips one

    Returns:
        The surviving rects ``int64 (m, 4)``, in order.
    """
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    big = _big_overlap_matrix(r)
    alive = list(range(len(r)))
    i = 0
    while i < len(alive):
        j = i + 1
        while j < len(alive):
            if big[alive[i], alive[j]]:
                del alive[j]  # the rect now at j is not looked at: j is incremented below
            j += 1
        i += 1
    return r[alive]


# --------------------------------------------------------------------------- (g) output


def release_xyxy(rects: np.ndarray) -> np.ndarray:
    """Step (g): ``(x, y, w, h)`` -> ``(min(x, x+w), min(y, y+h), max(x, x+w), max(y, y+h))``."""
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    xa, ya = r[:, 0], r[:, 1]
    xb, yb = r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]
    return np.column_stack(
        [np.minimum(xa, xb), np.minimum(ya, yb), np.maximum(xa, xb), np.maximum(ya, yb)]
    ).astype(np.int64)


# --------------------------------------------------------------------------- the rule


def cam_release_trace(
    cam: np.ndarray,
    thresholds: Sequence[int] = RELEASE_THRESHOLDS,
    zero_border: bool = True,
    sort: str = "libstdc++",
) -> ReleaseTrace:
    """Run steps (a)-(g) on one map and keep every intermediate.

    Args:
        cam: finite float map ``(H, W)`` in original image pixels.
        thresholds: 8-bit thresholds of step (b) (the release: 20, 100, 110).
        zero_border: OpenCV < 3.2 border handling in step (d) (the release); see module docs.
        sort: step (e), ``'libstdc++'`` (the release's ``std::sort``) or ``'stable'``.

    Returns:
        :class:`ReleaseTrace`.
    """
    cam = check_map(cam, finite=True)
    height, width = cam.shape
    empty = np.zeros((0, 4), dtype=np.int64)
    if not float(cam.max()) > 0.0:
        whole = np.array([0, 0, width - 1, height - 1], dtype=np.int64)
        return ReleaseTrace(
            gray=np.zeros((height, width), dtype=np.uint8), masks=(), dt_masks=(), rects=empty,
            rect_threshold=np.zeros(0, dtype=np.int64), rect_is_hole=np.zeros(0, dtype=bool),
            clamped=empty, sorted_rects=empty, kept=empty, boxes=whole[None, :].copy(),
            loose=whole, tight=whole.copy(), single_box=False, order_exact=True, degenerate=True,
        )  # fmt: skip
    gray = release_gray(cam)
    masks = release_masks(gray, thresholds)
    dt_masks = tuple(release_dt_mask(fg) for fg in masks)
    per = [release_contour_rects(m, zero_border=zero_border) for m in dt_masks]
    rects = np.concatenate([p[0] for p in per]) if per else empty
    is_hole = np.concatenate([p[1] for p in per]) if per else np.zeros(0, dtype=bool)
    which = np.concatenate([np.full(len(p[0]), i, dtype=np.int64) for i, p in enumerate(per)])
    clamped = release_clamp(rects, height, width)
    sorted_rects, order_exact = release_sort(clamped, sort)
    kept = release_merge(sorted_rects)
    boxes = release_xyxy(kept)
    if len(boxes) == 0:  # cannot happen for max > 0 with the release thresholds (< 255)
        whole = np.array([0, 0, width - 1, height - 1], dtype=np.int64)
        boxes = whole[None, :]
    return ReleaseTrace(
        gray=gray,
        masks=masks,
        dt_masks=dt_masks,
        rects=rects,
        rect_threshold=which,
        rect_is_hole=is_hole,
        clamped=clamped,
        sorted_rects=sorted_rects,
        kept=kept,
        boxes=boxes,
        loose=boxes[0].copy(),
        tight=boxes[1].copy() if len(boxes) > 1 else boxes[0].copy(),
        single_box=len(boxes) == 1,
        order_exact=order_exact,
        degenerate=False,
    )


def cam_release_boxes(cam: np.ndarray, zero_border: bool = True) -> tuple[np.ndarray, bool]:
    """The release's two boxes of one map: ``(int64 (2, 4) [loose, tight], degenerate)``.

    Boxes are ``(x, y, x + w, y + h)`` exactly as the release outputs them (see step (g)). Use
    :func:`cam_release_trace` for every intermediate.
    """
    tr = cam_release_trace(cam, zero_border=zero_border)
    return np.stack([tr.loose, tr.tight]), tr.degenerate


def cam_release_rule(
    cam: np.ndarray, thresholds: Sequence[float], connectivity: int = 8
) -> tuple[np.ndarray, bool]:
    """Adapter to :class:`bench.core.boxes.BoxRule`'s multi-threshold signature.

    The release fixes its own thresholds (8-bit 20/100/110) and yields ranked boxes, so the
    requested ``thresholds`` are NOT used as thresholds: ``T`` thresholds ask for the first
    ``T`` of ``[loose, tight]``. With the ``tight_loose`` heuristic (``T = 2``: index 0 = loose,
    1 = tight) the guesses are the release's ``bboxCombine``; with ``top5`` (``T = 1``) its
    ``bbox1``.

    Raises:
        ValueError: ``T`` not 1 or 2, a threshold outside ``[0, 1)``, or connectivity != 8
            (the release's contours are 8-connected).
    """
    ts = [float(t) for t in thresholds]
    if len(ts) not in (1, 2):
        raise ValueError(f"cam_release yields [loose, tight]: ask for 1 or 2 boxes, got {len(ts)} thresholds")
    if not all(0.0 <= t < 1.0 for t in ts):
        raise ValueError(f"threshold must be a finite fraction of the max in [0, 1), got {thresholds!r}")
    if connectivity != 8:
        raise ValueError(f"cam_release traces 8-connected contours; connectivity must be 8, got {connectivity!r}")
    boxes, degenerate = cam_release_boxes(cam)
    return boxes[: len(ts)].copy(), degenerate
