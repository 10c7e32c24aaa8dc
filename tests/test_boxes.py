"""Tests of bench.core.boxes: the ``largest_cc`` rule, hand-computed cases and properties."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from bench.core.boxes import BOX_RULES, boxes_for_maps, largest_cc_box, largest_cc_boxes


def box(cam: np.ndarray, t: float = 0.2, connectivity: int = 8) -> tuple[list[int], bool]:
    """``largest_cc_box`` with the box as a plain list, for readable asserts."""
    b, degenerate = largest_cc_box(np.asarray(cam), t, connectivity)
    assert b.dtype == np.int64 and b.shape == (4,)
    return b.tolist(), degenerate


# ----------------------------------------------------------------------------- hand-computed


def test_single_blob_inclusive_box() -> None:
    cam = np.zeros((6, 8))
    cam[1:4, 2:6] = 1.0  # rows 1..3, cols 2..5
    assert box(cam) == ([2, 1, 5, 3], False)


def test_single_pixel_box_has_equal_corners() -> None:
    cam = np.zeros((5, 5))
    cam[3, 1] = 2.0
    assert box(cam) == ([1, 3, 1, 3], False)


def test_whole_foreground_at_t0_positive_map() -> None:
    cam = np.full((4, 7), 0.5)
    cam[2, 3] = 1.0
    assert box(cam, t=0.0) == ([0, 0, 6, 3], False)


@pytest.mark.parametrize("fill", [0.0, -1.0, -1e-30])
def test_degenerate_map_gives_whole_image(fill: float) -> None:
    cam = np.full((4, 7), fill)
    if fill < 0:
        cam[1, 2] = 2 * fill  # not constant: still max <= 0
    assert box(cam) == ([0, 0, 6, 3], True)


def test_degenerate_map_mixed_zero_and_negative() -> None:
    cam = -np.arange(12, dtype=np.float32).reshape(3, 4)  # max exactly 0 at (0, 0)
    assert box(cam) == ([0, 0, 3, 2], True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_map_raises(bad: float) -> None:
    cam = np.ones((3, 3))
    cam[1, 1] = bad
    with pytest.raises(ValueError, match="not finite"):
        largest_cc_box(cam, 0.2)


@pytest.mark.parametrize("t", [1.0, 1.5, -0.1, float("nan")])
def test_bad_threshold_raises(t: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        largest_cc_box(np.ones((2, 2)), t)


def test_bad_shape_and_connectivity_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        largest_cc_box(np.ones((2, 2, 2)), 0.2)
    with pytest.raises(ValueError, match="empty"):
        largest_cc_box(np.ones((0, 3)), 0.2)
    with pytest.raises(ValueError, match="connectivity"):
        largest_cc_box(np.ones((2, 2)), 0.2, connectivity=6)


def test_threshold_is_strict() -> None:
    # 0.5 * max = 0.5 exactly: the four 0.5 pixels are background, only the max remains.
    cam = np.array([[0.5, 0.5, 0.5, 0.5, 0.0, 0.0],
                    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    assert box(cam, t=0.5) == ([5, 1, 5, 1], False)
    # just below: the 4-pixel run is foreground and is the largest component.
    assert box(cam, t=0.49) == ([0, 0, 3, 0], False)


def test_threshold_arithmetic_is_float64_for_float32_maps() -> None:
    # t * max = 0.3 * 1.0 = 0.29999999999999998890 in float64.
    above = np.float32(0.3)  # 0.30000001192...: foreground
    below = np.nextafter(above, np.float32(0))  # 0.29999998212...: background
    cam = np.array([[above, above, above, 0, 1],
                    [0, 0, 0, 0, 0],
                    [below, below, below, below, 0]], dtype=np.float32)
    # Rounding 0.3 to float32 first would make `above` background too; then the largest
    # component would be the lone max pixel.
    assert box(cam, t=0.3) == ([0, 0, 2, 0], False)
    assert box(cam.astype(np.float64), t=0.3) == ([0, 0, 2, 0], False)
    # float32(0.2) = 0.2000000030 > float64 0.2 * 1.0: foreground.
    cam2 = np.array([[np.float32(0.2)] * 4 + [0, 1]], dtype=np.float32)
    assert box(cam2, t=0.2) == ([0, 0, 3, 0], False)


DIAGONAL = np.array([[1, 0, 0, 0, 0],
                     [0, 1, 0, 0, 0],
                     [0, 0, 1, 0, 0],
                     [0, 0, 0, 0, 0],
                     [0, 0, 0, 1, 1]], dtype=np.float64)


def test_eight_connectivity_joins_diagonals() -> None:
    assert box(DIAGONAL, connectivity=8) == ([0, 0, 2, 2], False)  # chain of 3 beats pair


def test_four_connectivity_splits_diagonals() -> None:
    assert box(DIAGONAL, connectivity=4) == ([3, 4, 4, 4], False)  # pair beats singles


def test_largest_component_wins_over_the_max() -> None:
    cam = np.zeros((4, 6))
    cam[0, 0] = 10.0  # the max, alone
    cam[2:4, 2:6] = 3.0  # 8 pixels above 0.2 * 10
    assert box(cam) == ([2, 2, 5, 3], False)


def test_size_wins_over_sum() -> None:
    cam = np.array([[1, 1, 1, 0, 0],
                    [0, 0, 0, 0, 0],
                    [0, 0, 0, 4, 4]], dtype=np.float64)  # 0.2 * 4 = 0.8 < 1
    assert box(cam) == ([0, 0, 2, 0], False)


def test_equal_size_larger_sum_wins() -> None:
    cam = np.array([[1, 1, 0, 0, 0],
                    [0, 0, 0, 2, 2]], dtype=np.float64)
    assert box(cam) == ([3, 1, 4, 1], False)
    assert box(cam[:, ::-1] * [[2], [0.5]]) == ([3, 0, 4, 0], False)  # first one larger now


def test_equal_size_and_sum_first_in_raster_order_wins() -> None:
    cam = np.array([[1, 1, 0, 0, 0],
                    [0, 0, 0, 1, 1]], dtype=np.float64)
    assert box(cam) == ([0, 0, 1, 0], False)


def test_raster_order_is_by_first_pixel_not_leftmost_column() -> None:
    # A: column 4, rows 0..2 (first pixel (0, 4)); B: column 0, rows 1..3 (first pixel (1, 0)).
    cam = np.zeros((4, 5))
    cam[0:3, 4] = 1.0
    cam[1:4, 0] = 1.0
    assert box(cam) == ([4, 0, 4, 2], False)


def test_tie_on_sum_is_exact_not_approximate() -> None:
    # Equal size; sums 3.0 vs 3.0 + 2**-51 (one ulp of 3 above): the second must win.
    cam = np.array([[1.0, 1.0, 1.0, 0, 0, 0, 0],
                    [0, 0, 0, 0, 0, 0, 0],
                    [0, 0, 0, 0, 1.0, 1.0, 1.0 + 2.0**-51]])
    assert cam[2].sum() == 3.0 + 2.0**-51
    assert box(cam) == ([4, 2, 6, 2], False)


def test_u_shape_merges_at_bottom() -> None:
    # Two arms that only meet in the last row: one component (run graph must merge them).
    cam = np.array([[1, 0, 0, 1, 0, 1],
                    [1, 0, 0, 1, 0, 1],
                    [1, 1, 1, 1, 0, 1]], dtype=np.float64)
    assert box(cam) == ([0, 0, 3, 2], False)


def test_multiple_thresholds_and_registry() -> None:
    cam = np.array([[0.1, 0.1, 0.1, 0.1, 0.0],
                    [0.0, 0.0, 0.0, 0.0, 1.0]])
    boxes, degenerate = largest_cc_boxes(cam, [0.05, 0.5])
    assert boxes.tolist() == [[0, 0, 4, 1], [4, 1, 4, 1]] and degenerate is False
    rule = BOX_RULES["largest_cc"]
    assert rule.name == "largest_cc"
    b, d = rule(cam, 0.05)
    assert b.tolist() == [0, 0, 4, 1] and d is False
    assert rule(DIAGONAL, 0.2, 4)[0].tolist() == [3, 4, 4, 4]


def test_boxes_for_maps_batch() -> None:
    cams = np.zeros((3, 2, 5))
    cams[0] = [[0.1, 0.1, 0.1, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]
    cams[1] = -1.0
    cams[2, 1, 1] = 3.0
    boxes, degenerate = boxes_for_maps(cams, (0.05, 0.5))
    assert boxes.shape == (3, 2, 4) and boxes.dtype == np.int64
    assert degenerate.tolist() == [False, True, False]
    assert boxes.tolist() == [
        [[0, 0, 4, 1], [4, 1, 4, 1]],
        [[0, 0, 4, 1], [0, 0, 4, 1]],
        [[1, 1, 1, 1], [1, 1, 1, 1]],
    ]
    empty_boxes, empty_deg = boxes_for_maps(np.zeros((0, 4, 4)), (0.2,))
    assert empty_boxes.shape == (0, 1, 4) and empty_deg.shape == (0,)
    four, _ = boxes_for_maps(DIAGONAL[None], (0.2,), connectivity=4)
    eight, _ = boxes_for_maps(DIAGONAL[None], (0.2,), connectivity=8)
    assert four.tolist() == [[[3, 4, 4, 4]]] and eight.tolist() == [[[0, 0, 2, 2]]]
    with pytest.raises(ValueError, match="unknown box rule"):
        boxes_for_maps(cams, (0.2,), rule="nope")


# ----------------------------------------------------------------------------- oracles


def bfs_largest_cc(cam: np.ndarray, t: float, connectivity: int) -> tuple[list[int], bool]:
    """Independent reference: pure-Python flood fill (float64 arithmetic, as specified)."""
    h, w = cam.shape
    vals = cam.astype(np.float64).tolist()
    mx = max(max(row) for row in vals)
    if mx <= 0:
        return [0, 0, w - 1, h - 1], True
    thr = t * mx
    fg = [[v > thr for v in row] for row in vals]
    if connectivity == 8:
        steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    else:
        steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    seen = [[False] * w for _ in range(h)]
    best = None  # (size, sum, -order), pixels
    order = 0
    for y in range(h):
        for x in range(w):
            if not fg[y][x] or seen[y][x]:
                continue
            seen[y][x] = True
            queue, pixels = deque([(y, x)]), []
            while queue:
                cy, cx = queue.popleft()
                pixels.append((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and fg[ny][nx] and not seen[ny][nx]:
                        seen[ny][nx] = True
                        queue.append((ny, nx))
            pixels.sort()  # raster order, so the float sum is accumulated as specified
            total = 0.0
            for py, px in pixels:
                total += vals[py][px]
            key = (len(pixels), total, -order)
            order += 1
            if best is None or key > best[0]:
                best = (key, pixels)
    assert best is not None
    ys = [p[0] for p in best[1]]
    xs = [p[1] for p in best[1]]
    return [min(xs), min(ys), max(xs), max(ys)], False


def label_components(cam: np.ndarray, t: float, connectivity: int) -> tuple[np.ndarray, int]:
    """scipy.ndimage.label of the float64 foreground (second independent reference)."""
    cam64 = cam.astype(np.float64)
    fg = cam64 > t * cam64.max()
    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    return ndimage.label(fg, structure=structure)


small_int_maps = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
    elements=st.integers(-1, 3).map(float),  # small integers: many ties, exact sums
)
thresholds = st.one_of(st.sampled_from([0.0, 0.2, 0.25, 1 / 3, 0.5, 2 / 3, 0.99]),
                       st.floats(0.0, 0.999))
connectivities = st.sampled_from([4, 8])


@settings(max_examples=400, deadline=None)
@given(cam=small_int_maps, t=thresholds, connectivity=connectivities)
def test_matches_bfs_reference_on_tie_heavy_maps(cam: np.ndarray, t: float, connectivity: int) -> None:
    assert box(cam, t, connectivity) == bfs_largest_cc(cam, t, connectivity)


@settings(max_examples=200, deadline=None)
@given(
    cam=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
                   elements=st.floats(-2, 2, width=32)),
    t=thresholds,
    connectivity=connectivities,
)
def test_float32_maps_match_float64_reference(cam: np.ndarray, t: float, connectivity: int) -> None:
    assert box(cam, t, connectivity) == bfs_largest_cc(cam, t, connectivity)
    assert box(cam, t, connectivity) == box(cam.astype(np.float64), t, connectivity)


@settings(max_examples=200, deadline=None)
@given(cam=small_int_maps, t=thresholds, connectivity=connectivities)
def test_box_is_tight_bbox_of_a_largest_component(cam: np.ndarray, t: float, connectivity: int) -> None:
    (x0, y0, x1, y1), degenerate = box(cam, t, connectivity)
    if degenerate:
        assert cam.max() <= 0 and (x0, y0, x1, y1) == (0, 0, cam.shape[1] - 1, cam.shape[0] - 1)
        return
    labels, n = label_components(cam, t, connectivity)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    slices = ndimage.find_objects(labels)
    matches = [k for k, (sy, sx) in enumerate(slices)
               if (sx.start, sy.start, sx.stop - 1, sy.stop - 1) == (x0, y0, x1, y1)]
    # Some component has exactly this bbox (all its pixels inside, every edge touched) ...
    assert matches
    k = next(k for k in matches if sizes[k] == sizes.max())  # ... and is of maximal size
    mask = labels[y0:y1 + 1, x0:x1 + 1] == k + 1
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    assert (labels == k + 1).sum() == mask.sum()


@st.composite
def unimodal_maps(draw: st.DrawFn) -> np.ndarray:
    """Positive separable maps f(y) * g(x), f and g unimodal: one component at any t."""
    def profile(n: int) -> np.ndarray:
        vals = draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))
        peak = draw(st.integers(0, n - 1))
        vals = sorted(vals)
        top = vals.pop()
        left = sorted(vals[:peak])
        right = sorted(vals[peak:], reverse=True)
        return np.array(left + [top] + right, dtype=np.float64)
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    return np.outer(profile(h), profile(w))


@settings(max_examples=200, deadline=None)
@given(cam=unimodal_maps(), t=thresholds)
def test_unimodal_map_box_contains_every_argmax_and_all_foreground(cam: np.ndarray, t: float) -> None:
    (x0, y0, x1, y1), degenerate = box(cam, t, 4)
    assert not degenerate
    assert box(cam, t, 8) == ([x0, y0, x1, y1], False)
    for y, x in np.argwhere(cam == cam.max()):
        assert x0 <= x <= x1 and y0 <= y <= y1
    ys, xs = np.nonzero(cam > t * cam.max())
    assert [xs.min(), ys.min(), xs.max(), ys.max()] == [x0, y0, x1, y1]


def _smooth_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A 14x14 random grid bilinearly upsampled to h x w (ndimage.zoom, order 1)."""
    low = rng.standard_normal((14, 14))
    return ndimage.zoom(low, (h / 14, w / 14), order=1).astype(np.float32)


def test_realistic_maps_match_ndimage_label_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(6):
        cam = _smooth_map(rng, 375, 500)
        for t in (0.2, 20 / 255, 100 / 255, 0.6):
            for connectivity in (4, 8):
                labels, n = label_components(cam, t, connectivity)
                sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
                sums = np.bincount(labels.ravel(), weights=cam.astype(np.float64).ravel(),
                                   minlength=n + 1)[1:]
                k = max(range(n), key=lambda i: (sizes[i], sums[i], -i))
                sy, sx = ndimage.find_objects(labels)[k]
                expected = [sx.start, sy.start, sx.stop - 1, sy.stop - 1]
                assert box(cam, t, connectivity) == (expected, False)
