"""Tests of bench.core.release_boxes (rule ``cam_release``): every step on hand-built maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bench.core.boxes import BOX_RULES, boxes_for_maps
from bench.core.release_boxes import (
    _fh_dt_row,
    _libstdcxx_sort,
    cam_release_boxes,
    cam_release_rule,
    cam_release_trace,
    release_clamp,
    release_contour_rects,
    release_dt_mask,
    release_gray,
    release_masks,
    release_merge,
    release_sort,
    release_xyxy,
)


def rects(mask: list[list[int]] | np.ndarray, zero_border: bool = True) -> list[tuple[int, int, int, int, bool]]:
    r, hole = release_contour_rects(np.asarray(mask, dtype=bool), zero_border=zero_border)
    return [(*map(int, row), bool(h)) for row, h in zip(r, hole)]


# ----------------------------------------------------------------------------- (a), (b)


def test_gray_is_matlab_im2uint8_of_map_over_max() -> None:
    cam = np.array([[0.0, 0.5, 1.0], [-1.0, 0.25, 2.0]])
    # M / max = [0, .25, .5], [-.5 -> 0, .125, 1];  floor(255 x + 0.5)
    assert release_gray(cam).tolist() == [[0, 64, 128], [0, 32, 255]]
    assert release_gray(cam).dtype == np.uint8


def test_gray_needs_a_positive_max() -> None:
    with pytest.raises(ValueError, match="max"):
        release_gray(np.zeros((2, 2)))


def test_thresholds_are_strict() -> None:
    g = np.array([[20, 21, 100, 101, 110, 111]], dtype=np.uint8)
    m20, m100, m110 = release_masks(g)
    assert m20.astype(int).tolist() == [[0, 1, 1, 1, 1, 1]]
    assert m100.astype(int).tolist() == [[0, 0, 0, 1, 1, 1]]
    assert m110.astype(int).tolist() == [[0, 0, 0, 0, 0, 1]]


# ----------------------------------------------------------------------------- (c)


def brute_force_dt_mask(fg: np.ndarray) -> np.ndarray:
    """Independent reference: distance of each pixel to the nearest background pixel of the
    image (nothing outside counts), 8-bit ``(int)(d * 255 / max + 0.5)``, kept if > 10."""
    ys, xs = np.nonzero(~fg)
    yy, xx = np.mgrid[: fg.shape[0], : fg.shape[1]]
    d = np.sqrt(((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(axis=-1))
    return np.floor(d * (255.0 / d.max()) + 0.5) > 10


def test_dt_drops_the_outer_ring_of_a_big_square() -> None:
    # 49x49 square in a 51x51 image: max distance 25 (centre); ring pixels have d = 1,
    # 255 / 25 = 10.2 -> 10, not > 10: dropped; d = 2 -> 20.4 -> kept.
    fg = np.zeros((51, 51), dtype=bool)
    fg[1:50, 1:50] = True
    expected = np.zeros_like(fg)
    expected[2:49, 2:49] = True
    assert np.array_equal(release_dt_mask(fg), expected)


def test_dt_image_border_is_not_background() -> None:
    # Background only in column 0: d = x everywhere (the right border is no background),
    # max = 8, so every foreground pixel is kept; a border-as-background transform would
    # give the rightmost column d = 1 as well.
    fg = np.ones((3, 9), dtype=bool)
    fg[:, 0] = False
    assert np.array_equal(release_dt_mask(fg), fg)
    # With max distance 30 (one background pixel in a 1 x 31 row), x = 1 and 2 give
    # 8.5 -> 8 and 17 -> 17: the first is dropped.
    row = np.ones((1, 31), dtype=bool)
    row[0, 0] = False
    assert release_dt_mask(row)[0, :4].tolist() == [False, False, True, True]


def test_dt_empty_and_full_foreground() -> None:
    assert not release_dt_mask(np.zeros((4, 5), dtype=bool)).any()
    # dt.c's 1e20 arithmetic rounds every value of an all-foreground image to the same double:
    # min == max, double_to_image returns early, the binary image stays all 255: all kept.
    assert release_dt_mask(np.ones((40, 70), dtype=bool)).all()


def test_dt_row_port_is_the_squared_distance() -> None:
    assert _fh_dt_row([1e20, 0.0, 1e20, 1e20, 0.0]) == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert _fh_dt_row([0.0, 1e20, 1e20, 1e20]) == [0.0, 1.0, 4.0, 9.0]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(bool, st.tuples(st.integers(1, 14), st.integers(1, 14))))
def test_dt_mask_matches_brute_force(fg: np.ndarray) -> None:
    if fg.all() or not fg.any():
        return
    assert np.array_equal(release_dt_mask(fg), brute_force_dt_mask(fg))


# ----------------------------------------------------------------------------- (d)


RING = [
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    [0, 1, 1, 0, 0, 1, 1, 0, 0, 0],
    [0, 1, 1, 0, 1, 1, 1, 0, 1, 0],
    [0, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]


def test_contours_ring_with_hole_and_order() -> None:
    # Ring: bbox x 1..6, y 1..4 -> (1, 1, 6, 4). Hole {(3,2), (4,2), (3,3)}: bbox x 3..4,
    # y 2..3 grown by one -> x 2..5, y 1..4 -> (2, 1, 4, 4). Single pixel (8, 3) -> (8, 3, 1, 1).
    # Order: outer contours by decreasing raster index of their first pixel (pixel (8,3) is
    # found after (1,1)), each followed by its holes.
    assert rects(RING) == [(8, 3, 1, 1, False), (1, 1, 6, 4, False), (2, 1, 4, 4, True)]


def test_background_is_four_connected_so_a_diagonal_diamond_has_a_hole() -> None:
    diamond = [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    # Foreground 8-connected: one component (1, 1, 3, 3); the centre is 4-enclosed: a hole
    # whose rect is (2, 2) grown by 1 -> (1, 1, 3, 3).
    assert rects(diamond) == [(1, 1, 3, 3, False), (1, 1, 3, 3, True)]


def test_old_opencv_erases_the_image_frame_first() -> None:
    block = np.zeros((4, 5), dtype=bool)
    block[:, :3] = True  # touches the top, left and bottom borders
    assert rects(block, zero_border=True) == [(1, 1, 2, 2, False)]
    assert rects(block, zero_border=False) == [(0, 0, 3, 4, False)]
    # An opening to the border is not a hole; a frame erased by zero_border can open a hole.
    cup = np.ones((4, 4), dtype=bool)
    cup[1:3, 1:3] = False
    assert rects(cup, zero_border=False) == [(0, 0, 4, 4, False), (0, 0, 4, 4, True)]
    assert rects(cup, zero_border=True) == []


def test_contours_match_opencv_when_available() -> None:
    cv2 = pytest.importorskip("cv2")  # not a dependency: runs only where OpenCV is installed
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = rng.random(tuple(rng.integers(2, 20, 2))) < 0.55
        for zb in (True, False):
            img = np.where(m, 255, 0).astype(np.uint8)
            if zb:
                img[0, :] = img[-1, :] = 0
                img[:, 0] = img[:, -1] = 0
            cs, _ = cv2.findContours(img, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            ref = [tuple(cv2.boundingRect(c)) for c in cs]
            got, _ = release_contour_rects(m, zero_border=zb)
            assert [tuple(r) for r in got.tolist()] == ref


# ----------------------------------------------------------------------------- clamp, sort


def test_clamp_uses_the_unclamped_corner_and_can_go_negative() -> None:
    # W = 20, H = 10: x' = LIMIT(17, 0, 15) = 15, y' = LIMIT(8, 0, 5) = 5,
    # w' = LIMIT(3, 0, 20 - 17 - 5 = -2) = -2, h' = LIMIT(2, 0, 10 - 8 - 5 = -3) = -3.
    # Third rect: h' = LIMIT(4, 0, 10 - 2 - 5 = 3) = 3.
    out = release_clamp(np.array([[17, 8, 3, 2], [0, 0, 20, 10], [3, 2, 4, 4]]), height=10, width=20)
    assert out.tolist() == [[15, 5, -2, -3], [0, 0, 15, 5], [3, 2, 4, 3]]
    # Output as the release's MATLAB reads it: min/max per axis of (x, x + w).
    assert release_xyxy(out).tolist() == [[13, 2, 15, 5], [0, 0, 15, 5], [3, 2, 7, 5]]


def test_sort_by_area_descending_stable_up_to_16() -> None:
    r = np.array([[0, 0, 2, 2], [5, 5, 3, 3], [1, 1, 4, 1], [9, 9, 1, 4]])  # areas 4, 9, 4, 4
    out, exact = release_sort(r)
    assert out.tolist() == [[5, 5, 3, 3], [0, 0, 2, 2], [1, 1, 4, 1], [9, 9, 1, 4]]
    assert exact


def test_std_sort_port_matches_libstdcxx_above_16() -> None:
    keys = [3, 0, 0, 0, 0, 3, 3, 2, 0, 0, 1, 1, 2, 1, 1, 0, 2, 2, 0, 0, 1, 1, 3, 2]
    # Recorded from g++ 12 (libstdc++) std::sort with comp = key a > key b on these keys:
    expected = [22, 5, 6, 0, 12, 23, 17, 16, 7, 10, 11, 13, 14, 20, 21, 8, 9, 15, 4, 3, 18, 19, 2, 1]
    assert _libstdcxx_sort(keys) == expected
    stable = np.argsort(-np.array(keys), kind="stable").tolist()
    assert stable != expected  # introsort is not stable: a stable sort would be wrong here
    r = np.array([[i, 0, 1, k] for i, k in enumerate(keys)])
    out, exact = release_sort(r)
    assert out[:, 0].tolist() == expected and not exact
    out_stable, _ = release_sort(r, method="stable")
    assert out_stable[:, 0].tolist() == stable


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-3, 6), max_size=60))
def test_std_sort_port_is_a_descending_permutation(keys: list[int]) -> None:
    perm = _libstdcxx_sort(keys)
    assert sorted(perm) == list(range(len(keys)))
    got = [keys[i] for i in perm]
    assert got == sorted(keys, reverse=True)
    if len(keys) <= 16:
        assert perm == np.argsort(-np.array(keys, dtype=int), kind="stable").tolist()


# ----------------------------------------------------------------------------- (f) merge


def test_merge_drops_big_overlaps_and_skips_the_next_one() -> None:
    a = [0, 0, 10, 10]  # area 100: drop threshold int(0.5 * 100) = 50
    b = [0, 0, 9, 9]  # overlap 81 > 50: dropped; C moves into its slot and is skipped
    c = [1, 1, 8, 8]  # overlap 64 > 50, but never compared with A
    d = [2, 2, 8, 7]  # overlap 56 > 50: dropped
    assert release_merge(np.array([a, b, c, d])).tolist() == [a, c]


def test_merge_threshold_is_strict_and_truncated() -> None:
    a = [0, 0, 10, 10]
    half = [0, 0, 10, 5]  # overlap 50, not > int(50): kept
    assert release_merge(np.array([a, half])).tolist() == [a, half]
    more = [0, 0, 10, 6]  # overlap 60 > 50: dropped
    assert release_merge(np.array([a, more])).tolist() == [a]
    # area 21 -> int(10.5) = 10: overlap 14 (7 x 2) drops, 10 (5 x 2) does not
    assert release_merge(np.array([[0, 0, 7, 3], [0, 0, 7, 2]])).tolist() == [[0, 0, 7, 3]]
    assert release_merge(np.array([[0, 0, 7, 3], [0, 0, 5, 2]])).tolist() == [[0, 0, 7, 3], [0, 0, 5, 2]]


# ----------------------------------------------------------------------------- whole rule


def two_blob_cam() -> np.ndarray:
    cam = np.zeros((40, 60))
    cam[5:25, 5:35] = 0.2  # g = 51: foreground at threshold 20 only
    cam[10:18, 45:53] = 1.0  # g = 255: foreground at 20, 100 and 110
    return cam


def test_two_blobs_loose_and_tight() -> None:
    tr = cam_release_trace(two_blob_cam())
    # t = 20: blobs A (5, 5, 30, 20) and B (45, 10, 8, 8), found in reverse raster order
    # (B's first pixel (45, 10) comes after A's (5, 5)); t = 100 and 110: B only.
    assert tr.rects.tolist() == [[45, 10, 8, 8], [5, 5, 30, 20], [45, 10, 8, 8], [45, 10, 8, 8]]
    assert tr.rect_threshold.tolist() == [0, 0, 1, 2]
    assert tr.sorted_rects.tolist() == [[5, 5, 30, 20], [45, 10, 8, 8], [45, 10, 8, 8], [45, 10, 8, 8]]
    # i = 0: nothing overlaps A. i = 1: the second B is dropped and the third skipped.
    assert tr.kept.tolist() == [[5, 5, 30, 20], [45, 10, 8, 8], [45, 10, 8, 8]]
    assert tr.loose.tolist() == [5, 5, 35, 25]  # (x, y, x + w, y + h)
    assert tr.tight.tolist() == [45, 10, 53, 18]
    boxes, degenerate = cam_release_boxes(two_blob_cam())
    assert boxes.tolist() == [[5, 5, 35, 25], [45, 10, 53, 18]] and not degenerate


def test_nested_blob_gives_the_same_box_twice_by_the_skip_quirk() -> None:
    cam = np.zeros((30, 40))
    cam[5:20, 8:30] = 1.0
    cam[10:15, 12:20] = 2.0  # g = 128 outside, 255 inside: every threshold sees the outer blob
    tr = cam_release_trace(cam)
    assert tr.sorted_rects.tolist() == [[8, 5, 22, 15]] * 3
    # j = 1 is dropped, the copy moving into slot 1 is skipped: two identical boxes survive.
    assert tr.kept.tolist() == [[8, 5, 22, 15]] * 2
    assert tr.loose.tolist() == tr.tight.tolist() == [8, 5, 30, 20]
    assert not tr.single_box


def test_degenerate_map_is_the_whole_image() -> None:
    boxes, degenerate = cam_release_boxes(-np.ones((7, 9)))
    assert degenerate and boxes.tolist() == [[0, 0, 8, 6], [0, 0, 8, 6]]


def test_non_finite_map_raises() -> None:
    cam = np.ones((3, 3))
    cam[1, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        cam_release_boxes(cam)


def test_registered_rule_returns_loose_then_tight() -> None:
    cam = two_blob_cam()
    assert "cam_release" in BOX_RULES
    boxes, degenerate = boxes_for_maps(cam[None], (20 / 255, 100 / 255), rule="cam_release")
    assert boxes.tolist() == [[[5, 5, 35, 25], [45, 10, 53, 18]]] and degenerate.tolist() == [False]
    box, _ = BOX_RULES["cam_release"](cam, 0.2)
    assert box.tolist() == [5, 5, 35, 25]
    with pytest.raises(ValueError, match="1 or 2"):
        cam_release_rule(cam, (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="connectivity"):
        cam_release_rule(cam, (0.1,), connectivity=4)
