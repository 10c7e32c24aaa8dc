"""Box rules: turn a class activation map into one bounding box per threshold.

Conventions (docs/protocol.md):

* a map is a finite float array ``(H, W)`` in the image's original pixels;
* a box is ``int64 (4,)`` ``(xmin, ymin, xmax, ymax)``, 0-based, with INCLUSIVE pixel
  indices, so the box ``(0, 0, 0, 0)`` covers exactly one pixel and the whole image is
  ``(0, 0, W - 1, H - 1)``;
* every rule returns ``(box, degenerate)``; ``degenerate`` is True when the map has nothing
  to segment (its maximum is ``<= 0``) and the box is then the whole image.

Rules are registered by name in :data:`BOX_RULES`; :func:`boxes_for_maps` runs a named rule
on a batch of maps and several thresholds at once.

Threshold arithmetic is defined in float64: a pixel is foreground iff
``float64(M[y, x]) > float64(t) * float64(max(M))`` (the product rounded once, in float64).
For float32/float16 maps this is evaluated without up-casting the map, by comparing against
the largest value of the map's dtype that does not exceed the float64 threshold, which
selects exactly the same pixels.

Connected components are computed on horizontal runs of the foreground (run-length
labelling, runs joined across adjacent rows by binary search and merged with
``scipy.sparse.csgraph.connected_components``): the result is identical to labelling the
pixels with ``scipy.ndimage.label`` (the tests cross-check both and a flood fill) and about
twice as fast on smooth CAMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from bench.core.maps import check_map

__all__ = [
    "BoxRule",
    "BOX_RULES",
    "DEFAULT_THRESHOLD",
    "largest_cc_box",
    "largest_cc_boxes",
    "boxes_for_maps",
    "whole_image_box",
]

#: The paper's threshold for ``largest_cc``: 20 % of the map's maximum.
DEFAULT_THRESHOLD: float = 0.20

#: Signature of a multi-threshold rule:
#: ``(cam, thresholds, connectivity) -> (boxes (T, 4) int64, degenerate)``.
MultiThresholdFn = Callable[[np.ndarray, Sequence[float], int], tuple[np.ndarray, bool]]


@dataclass(frozen=True)
class BoxRule:
    """A named box rule.

    Attributes:
        name: registry key (saved with each run's resolved protocol).
        boxes: ``(cam (H, W), thresholds, connectivity) -> (boxes (T, 4) int64, degenerate)``;
            the map is validated and its maximum computed once for all thresholds.
        description: one line for reports.
    """

    name: str
    boxes: MultiThresholdFn = field(repr=False)
    description: str = ""

    def __call__(
        self, cam: np.ndarray, threshold: float, connectivity: int = 8
    ) -> tuple[np.ndarray, bool]:
        """Apply the rule at one threshold: ``(box int64 (4,), degenerate)``."""
        boxes, degenerate = self.boxes(cam, (threshold,), connectivity)
        return boxes[0], degenerate


def whole_image_box(height: int, width: int) -> np.ndarray:
    """The inclusive box covering a ``height x width`` image: ``(0, 0, W-1, H-1)``."""
    return np.array([0, 0, width - 1, height - 1], dtype=np.int64)


def _check_threshold(threshold: float) -> float:
    """Thresholds are fractions of the maximum in ``[0, 1)``; 1 or more would select nothing."""
    t = float(threshold)
    if not (0.0 <= t < 1.0):
        raise ValueError(f"threshold must be a finite fraction of the max in [0, 1), got {threshold!r}")
    return t


def _map_max(cam: np.ndarray) -> float:
    """``max(cam)`` as a Python float; raises ValueError if the map holds NaN or +-inf."""
    mx = cam.max()
    mn = cam.min()
    if not (np.isfinite(mx) and np.isfinite(mn)):
        bad = ~np.isfinite(cam)
        n_nan = int(np.isnan(cam).sum())
        raise ValueError(
            f"CAM is not finite: {int(bad.sum())} non-finite values "
            f"({n_nan} NaN, {int(bad.sum()) - n_nan} infinite) in a map of shape {cam.shape}"
        )
    return float(mx)


def _threshold_in_dtype(thr: float, dtype: np.dtype) -> np.generic:
    """The largest value of ``dtype`` that is ``<= thr`` (``thr`` is a float64 threshold).

    For a map ``M`` of that dtype, ``M > result`` selects exactly the pixels with
    ``float64(M) > thr``, without up-casting the map.
    """
    scalar = np.dtype(dtype).type
    value = scalar(thr)
    if float(value) > thr:
        value = np.nextafter(value, scalar(-np.inf))
    return value


def _foreground_runs(fg: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Horizontal runs of a boolean mask, in raster order.

    The mask is padded with one background column on each side (row stride ``K = W + 2``)
    so that no run crosses a row boundary. Returns ``(s, e, K)``: ``s[i]`` is the padded flat
    index of run ``i``'s first pixel and ``e[i]`` the index one past its last pixel; pixel
    ``(y, x)`` has padded flat index ``y * K + x + 1``.
    """
    height, width = fg.shape
    stride = width + 2
    padded = np.zeros((height, stride), dtype=bool)
    padded[:, 1:-1] = fg
    flat = padded.ravel()
    transitions = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    return transitions[0::2], transitions[1::2], stride


def _run_components(
    s: np.ndarray, e: np.ndarray, stride: int, connectivity: int
) -> tuple[int, np.ndarray]:
    """Connected components of runs (``s``, ``e`` from :func:`_foreground_runs`).

    Run ``a`` in the row above run ``b`` touches it iff their column intervals overlap
    (4-connectivity) or overlap or touch diagonally (8-connectivity). Because runs are sorted
    in raster order and the row stride exceeds every column, the runs touching ``b`` form one
    contiguous index range ``[lo, hi)``, found by binary search on ``s`` and ``e`` shifted
    by one row. Returns ``(n_components, component id per run)``.
    """
    n_runs = s.size
    side = "left" if connectivity == 8 else "right"
    other = "right" if connectivity == 8 else "left"
    # 8-conn: a.end_excl >= b.start and a.start <= b.end_excl; 4-conn: strict inequalities.
    lo = np.searchsorted(e, s - stride, side=side)
    hi = np.searchsorted(s, e - stride, side=other)
    counts = np.maximum(hi - lo, 0)
    indptr = np.zeros(n_runs + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    n_edges = int(indptr[-1])
    if n_edges == 0:
        return n_runs, np.arange(n_runs)
    # Neighbour list of run b: lo[b], lo[b] + 1, ..., hi[b] - 1 (CSR, one row per run).
    indices = np.arange(n_edges) + np.repeat(lo - indptr[:-1], counts)
    # float64 weights and int32 indices are what csgraph works in: no conversion copies.
    index_dtype = np.int32 if max(n_edges, n_runs) < np.iinfo(np.int32).max else np.int64
    graph = csr_matrix(
        (np.ones(n_edges), indices.astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n_runs, n_runs),
    )
    return connected_components(graph, directed=True, connection="weak")


def _largest_component_box(
    fg: np.ndarray, cam: np.ndarray, connectivity: int
) -> np.ndarray:
    """Inclusive bbox of the largest connected component of a non-empty foreground mask.

    Ties on size go to the larger sum of ``cam`` over the component (float64, accumulated
    pixel by pixel in raster order), then to the component whose first pixel comes first in
    raster order (the lowest label ``scipy.ndimage.label`` would give it).

    Components are found on horizontal runs rather than pixels (run-length connected
    component labelling): all per-pixel work is a few vectorized passes over the mask, and
    the graph step only sees one node per run. The result equals labelling the mask with
    ``scipy.ndimage.label`` (the tests check this) at about twice its speed.
    """
    s, e, stride = _foreground_runs(fg)
    rows = s // stride
    x0 = s - rows * stride - 1  # first column of each run
    x1 = e - rows * stride - 2  # last column (inclusive)
    n_comp, comp = _run_components(s, e, stride, connectivity)
    if n_comp == 1:
        return np.array([x0.min(), rows[0], x1.max(), rows[-1]], dtype=np.int64)

    lengths = e - s
    sizes = np.bincount(comp, weights=lengths, minlength=n_comp)  # exact: integers < 2**53
    cand = np.flatnonzero(sizes == sizes.max())
    if cand.size == 1:
        win = int(cand[0])
    else:
        # CAM sums over the tied components, pixel by pixel in raster order.
        sel = np.flatnonzero(np.isin(comp, cand))
        run_len = lengths[sel]
        first_pix = (rows[sel] * fg.shape[1] + x0[sel]).astype(np.int64)
        offsets = np.cumsum(run_len) - run_len
        pix = np.arange(int(run_len.sum())) + np.repeat(first_pix - offsets, run_len)
        values = np.ravel(cam)[pix].astype(np.float64)
        sums = np.bincount(np.repeat(comp[sel], run_len), weights=values, minlength=n_comp)
        best = cand[sums[cand] == sums[cand].max()]
        if best.size == 1:
            win = int(best[0])
        else:
            # First run of each component = its first pixel in raster order.
            first_run = np.full(n_comp, s.size, dtype=np.int64)
            np.minimum.at(first_run, comp[sel], sel)
            win = int(best[np.argmin(first_run[best])])

    mine = comp == win
    return np.array(
        [x0[mine].min(), rows[mine].min(), x1[mine].max(), rows[mine].max()],
        dtype=np.int64,
    )


def largest_cc_boxes(
    cam: np.ndarray, thresholds: Sequence[float], connectivity: int = 8
) -> tuple[np.ndarray, bool]:
    """Rule ``largest_cc`` at several thresholds of one map (validated once).

    Returns ``(boxes int64 (T, 4), degenerate)``; see :func:`largest_cc_box`.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    cam = check_map(cam)
    ts = [_check_threshold(t) for t in thresholds]
    mx = _map_max(cam)
    height, width = cam.shape
    out = np.empty((len(ts), 4), dtype=np.int64)
    if mx <= 0.0:
        out[:] = whole_image_box(height, width)
        return out, True
    for i, t in enumerate(ts):
        # float64 product, then the equivalent threshold in the map's dtype. Because
        # t < 1 and max > 0, the max pixel is always foreground, so fg is never empty.
        fg = cam > _threshold_in_dtype(t * mx, cam.dtype)
        out[i] = _largest_component_box(fg, cam, connectivity)
    return out, False


def largest_cc_box(
    cam: np.ndarray, threshold: float = DEFAULT_THRESHOLD, connectivity: int = 8
) -> tuple[np.ndarray, bool]:
    """Bounding box of the largest connected component of ``cam > threshold * max(cam)``.

    Args:
        cam: finite float map ``(H, W)`` in original image pixels.
        threshold: fraction of the map's maximum in ``[0, 1)``; the comparison is STRICT
            (a pixel exactly at ``threshold * max`` is background), evaluated in float64.
        connectivity: 8 (default, the paper) or 4.

    Returns:
        ``(box, degenerate)``: ``box`` is int64 ``(xmin, ymin, xmax, ymax)`` with inclusive
        0-based pixel indices. If ``max(cam) <= 0`` the box is the whole image
        ``(0, 0, W-1, H-1)`` and ``degenerate`` is True.

    The kept component has the most pixels; ties go to the larger sum of ``cam`` over the
    component, then to the component whose first pixel comes first in raster order.

    Raises:
        ValueError: the map is not 2-D, is empty, or holds NaN/inf; bad threshold or
            connectivity.
    """
    boxes, degenerate = largest_cc_boxes(cam, (threshold,), connectivity=connectivity)
    return boxes[0], degenerate


#: Registry of box rules by name.
BOX_RULES: dict[str, BoxRule] = {
    "largest_cc": BoxRule(
        name="largest_cc",
        boxes=largest_cc_boxes,
        description=(
            "bbox of the largest 8-connected component of M > t*max(M) "
            "(ties: larger CAM sum, then first in raster order); whole image if max(M) <= 0"
        ),
    ),
}

# The CAM authors' released box generator (bench.core.release_boxes does not import this module).
from bench.core.release_boxes import cam_release_rule  # noqa: E402

BOX_RULES["cam_release"] = BoxRule(
    name="cam_release",
    boxes=cam_release_rule,
    description=(
        "the CAM release's dt_box: 8-bit map, thresholds 20/100/110, distance transform > 10, "
        "all contours' rects, sort + merge; T=1 -> [loose], T=2 -> [loose, tight] "
        "(threshold values unused); boxes (x, y, x+w, y+h)"
    ),
)


def boxes_for_maps(
    cams: np.ndarray,
    thresholds: Sequence[float],
    rule: str = "largest_cc",
    connectivity: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a named box rule to a batch of maps at several thresholds.

    Args:
        cams: ``(n, H, W)`` float maps (or any sequence of ``(H_i, W_i)`` maps).
        thresholds: ``T`` fractions of each map's own maximum.
        rule: a key of :data:`BOX_RULES`.
        connectivity: 8 (the paper) or 4, passed to the rule.

    Returns:
        ``(boxes int64 (n, T, 4), degenerate bool (n,))``; ``boxes[i, j]`` is map ``i``'s box at
        ``thresholds[j]``. Degeneracy is a property of the map, not of the threshold.
    """
    try:
        box_rule = BOX_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown box rule {rule!r}; known: {sorted(BOX_RULES)}") from None
    thresholds = [float(t) for t in thresholds]
    if isinstance(cams, np.ndarray) and cams.ndim != 3:
        raise ValueError(f"cams must be an (n, H, W) array, got shape {cams.shape}")
    n = len(cams)
    boxes = np.empty((n, len(thresholds), 4), dtype=np.int64)
    degenerate = np.zeros(n, dtype=bool)
    for i in range(n):
        boxes[i], degenerate[i] = box_rule.boxes(cams[i], thresholds, connectivity)
    return boxes, degenerate
