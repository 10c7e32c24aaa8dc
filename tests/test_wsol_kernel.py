"""The compiled wsolevaluation contour kernel (bench.core.wsol_kernel) against OpenCV itself.

Three independent checks: (1) every level's set of contour boxes (outer borders and hole borders,
told apart by their depth in OpenCV's RETR_TREE hierarchy) equals the kernel's union-find boxes;
(2) wherever the kernel decides the largest contour on its own (area bounds from 2x2-window counts
and Euler numbers), its box is the box of OpenCV's first contour of largest cv2.contourArea;
(3) the per-threshold hits of image_box_hits (what sweep.json and sweep_curves.csv are built from)
equal the OpenCV path's, on hypothesis maps, CAM-like 224 maps and hand-made edge cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

cv2 = pytest.importorskip("cv2")

from bench.core import wsol, wsol_kernel  # noqa: E402

if not wsol_kernel.AVAILABLE:  # pragma: no cover
    pytest.skip("numba is not installed", allow_module_level=True)


def opencv_level(q: np.ndarray, t: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], tuple[int, ...]]:
    """OpenCV's contours of ``q > t``: sorted outer boxes, sorted hole boxes (odd depth in the tree)
    and the box of the first contour of largest contourArea ((0, 0, 0, 0) when none)."""
    binary = cv2.threshold(q, t, 255, cv2.THRESH_BINARY)[1]
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2:]
    h, w = q.shape
    outer, holes, boxes, areas = [], [], [], []
    for i, c in enumerate(contours):
        x, y, bw, bh = cv2.boundingRect(c)
        box = (x, y, min(x + bw, w - 1), min(y + bh, h - 1))
        depth, j = 0, i
        while hierarchy[0][j][3] >= 0:
            j, depth = hierarchy[0][j][3], depth + 1
        (holes if depth % 2 else outer).append(box)
        boxes.append(box)
        areas.append(cv2.contourArea(c))
    largest = boxes[areas.index(max(areas))] if boxes else (0, 0, 0, 0)
    return sorted(outer), sorted(holes), largest


def check_map(q: np.ndarray) -> int:
    """Assert (1) and (2) at every level of a uint8 map; returns the number of levels decided."""
    q = np.ascontiguousarray(q, dtype=np.uint8)
    levels = np.arange(255)
    v1_box, v1_ok, _, _ = wsol_kernel.level_hits(q, np.zeros((1, 4), dtype=np.int64), levels, wsol.DELTAS)
    decided = 0
    for t in sorted({0, *np.unique(q).tolist()} - {255}):
        outer, holes, largest = opencv_level(q, t)
        k_outer, k_holes = wsol_kernel.level_boxes(q, t)
        assert [tuple(b) for b in k_outer.tolist()] == outer, (q.tolist(), t)
        assert [tuple(b) for b in k_holes.tolist()] == holes, (q.tolist(), t)
        if v1_ok[t]:
            assert tuple(v1_box[t].tolist()) == largest, (q.tolist(), t)
            decided += 1
    return decided


def pattern(rows: list[str]) -> np.ndarray:
    """A binary map from rows of '#' (foreground, 255) and '.' (0)."""
    return np.array([[255 if ch == "#" else 0 for ch in r] for r in rows], dtype=np.uint8)


EDGE_CASES = {
    "single pixel": ["...", ".#.", "..."],
    "single pixel in a corner": ["#.", ".."],
    "full map": ["##", "##"],
    "diagonal only": ["#..", ".#.", "..#"],
    "anti-diagonal pair and a pixel": ["..#.", ".#..", "...#"],
    "one-pixel line": [".....", "####.", "....."],
    "vertical line on the edge": ["#..", "#..", "#.."],
    "thin ring": ["###", "#.#", "###"],
    "thin ring with a tail": ["#####", "#.#..", "###.."],
    "ring with island": ["#####", "#...#", "#.#.#", "#...#", "#####"],
    "two holes touching diagonally": ["#####", "#.###", "##.##", "#####"],
    "hole open to the edge": ["###", "#..", "###"],
    "diamond hole": [".#.", "#.#", ".#."],
    "nested rings": ["#######", "#.....#", "#.###.#", "#.#.#.#", "#.###.#", "#.....#", "#######"],
    "checkerboard": ["#.#.", ".#.#", "#.#.", ".#.#"],
    "two equal squares": ["##.##", "##.##"],
    "equal lines": ["###.###"],
    "U shape": ["#.#", "#.#", "###"],
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_equal_opencv(name: str) -> None:
    q = pattern(EDGE_CASES[name])
    check_map(q)
    check_map(np.pad(q, 1))  # the same shape away from the edge


@settings(max_examples=250, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(0, 3)))
def test_few_levels_equal_opencv(q: np.ndarray) -> None:
    """Maps with 4 levels: many components, holes, islands, diagonal links and ties."""
    check_map(q * np.uint8(80))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 255)))
def test_many_levels_equal_opencv(q: np.ndarray) -> None:
    check_map(q)


def cam_like(rng: np.random.Generator, noise: float, size: int = 224) -> np.ndarray:
    """A bump plus noise on a 28 x 28 grid, resized bilinearly (what a CAM looks like), normalised."""
    yy, xx = np.mgrid[0:28, 0:28]
    cy, cx, s = rng.integers(4, 24), rng.integers(4, 24), rng.uniform(2, 8)
    grid = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s)) + noise * rng.random((28, 28))
    cam = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return wsol.normalize_scoremap(cam)


def test_cam_like_maps_decided_levels_equal_opencv() -> None:
    rng = np.random.default_rng(0)
    decided = sum(check_map((cam_like(rng, noise) * 255).astype(np.uint8)) for noise in (0.0, 0.3, 1.0))
    assert decided > 0.9 * 3 * 255  # the kernel decides almost every level of a CAM itself


def _gt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    n = int(rng.integers(1, 4))
    x1, y1 = rng.integers(0, w, n), rng.integers(0, h, n)
    return np.stack([x1, y1, np.minimum(x1 + rng.integers(0, w, n), w - 1), np.minimum(y1 + rng.integers(0, h, n), h - 1)], 1)


def assert_same_hits(scoremap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> None:
    got = wsol.image_box_hits(scoremap, gt, thresholds)
    want = wsol.image_box_hits(scoremap, gt, thresholds, compiled=False)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@settings(max_examples=80, deadline=None)
@given(
    arrays(np.float32, st.tuples(st.integers(2, 30), st.integers(2, 30)), elements=st.integers(0, 6).map(float)),
    st.integers(0, 2**32 - 1),
)
def test_hits_equal_opencv_path(cam: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scoremap = wsol.normalize_scoremap(cam)
    assert_same_hits(scoremap, _gt(rng, *cam.shape), wsol.wsol_thresholds(0.001))


def test_hits_equal_opencv_path_on_cam_like_maps() -> None:
    rng = np.random.default_rng(1)
    thresholds = wsol.wsol_thresholds(0.001)
    for i in range(12):
        scoremap = cam_like(rng, (0.0, 0.3, 1.0)[i % 3])
        assert_same_hits(scoremap, _gt(rng, 224, 224), thresholds)
    assert_same_hits(np.zeros((224, 224), dtype=np.float32), np.array([[0, 0, 10, 10]]), thresholds)  # no contour


def test_without_numba_the_opencv_path_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With numba missing (AVAILABLE False) image_box_hits never calls the kernel and still gives
    the same hits."""
    rng = np.random.default_rng(2)
    scoremap, gt, thresholds = cam_like(rng, 0.3), _gt(rng, 224, 224), wsol.wsol_thresholds(0.01)
    want = wsol.image_box_hits(scoremap, gt, thresholds)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the kernel ran without numba")

    monkeypatch.setattr(wsol_kernel, "AVAILABLE", False)
    monkeypatch.setattr(wsol_kernel, "level_hits", refuse)
    got = wsol.image_box_hits(scoremap, gt, thresholds)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_sweep_results_equal_opencv_path() -> None:
    """The accumulated sweep (what sweep.json and sweep_curves.csv hold) from both paths, equal."""
    rng = np.random.default_rng(3)
    thresholds = wsol.wsol_thresholds(0.001)
    fast, ref = wsol.BoxAccumulator(thresholds), wsol.BoxAccumulator(thresholds)
    for i in range(8):
        cam = cv2.resize(rng.random((14, 14)).astype(np.float32) ** 3, (224, 224), interpolation=cv2.INTER_LINEAR)
        boxes, size = np.array([[40, 30, 300, 200]]), (400, 300)
        fast.add(*wsol.cam_box_hits(cam, boxes, size, thresholds))
        scoremap = wsol.normalize_scoremap(wsol.resize_map(cam))
        ref.add(*wsol.image_box_hits(scoremap, wsol.scale_gt_boxes(boxes, size), thresholds, compiled=False))
    got, want = fast.results(), ref.results()
    assert got.pop("curves").equals(want.pop("curves"))
    assert got == want
