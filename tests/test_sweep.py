"""Tests of bench.core.sweep: single-pass threshold sweeps against per-threshold labelling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bench.core import sweep_kernel
from bench.core.sweep import (
    DEFAULT_THRESHOLDS,
    FINE_THRESHOLDS,
    SweepAccumulator,
    normalize_map,
    reference_sweep_map,
    scale_boxes,
    sweep_backend,
    sweep_map,
)

#: Every implementation of sweep_map that this installation has ('compiled' needs numba).
METHODS = (("compiled",) if sweep_kernel.AVAILABLE else ()) + ("basins", "unionfind")


def same(a, b) -> bool:  # noqa: ANN001
    return (
        np.array_equal(a.largest_box, b.largest_box)
        and np.array_equal(a.largest_iou, b.largest_iou)
        and np.array_equal(a.hit_any, b.hit_any)
    )


# Maps with values k/16: every partial sum is exact in float64, so ties on size are broken
# by the map sum identically in any summation order (see the module docstring).
dyadic_maps = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.integers(0, 16).map(lambda k: k / 16),
)


@st.composite
def cases(draw):  # noqa: ANN001, ANN201
    m = draw(dyadic_maps)
    h, w = m.shape
    boxes = []
    for _ in range(draw(st.integers(1, 2))):
        x0, x1 = sorted(draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
        y0, y1 = sorted(draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
        boxes.append([x0, y0, x1, y1])
    grid = np.round(np.arange(0, 1, 1 / 16), 6)
    thr = np.array(sorted(draw(st.sets(st.sampled_from(grid.tolist()), min_size=1, max_size=8))))
    return m, np.array(boxes), thr


@settings(max_examples=70, deadline=None)
@given(cases(), st.booleans(), st.sampled_from(["inclusive", "wsol"]))
def test_single_pass_equals_per_threshold_labelling(case, quantize: bool, convention: str) -> None:  # noqa: ANN001
    m, gt, thr = case
    deltas = (10, 30, 50, 70, 90)
    ref = reference_sweep_map(m, gt, thr, deltas, quantize=quantize, box_convention=convention)
    for method in METHODS:
        got = sweep_map(m, gt, thr, deltas, quantize=quantize, box_convention=convention, method=method)
        assert same(got, ref), method


def test_random_smooth_maps_on_the_default_grid() -> None:
    rng = np.random.default_rng(1)
    for _ in range(6):
        low = rng.integers(0, 65, (5, 6)) / 64
        m = np.kron(low, np.ones((7, 5)))  # blocky, with many equal-size ties
        m = m + 0 * rng.random(m.shape)
        gt = np.array([[3, 4, 20, 25]])
        ref = reference_sweep_map(m, gt, DEFAULT_THRESHOLDS)
        for method in METHODS:
            assert same(sweep_map(m, gt, DEFAULT_THRESHOLDS, method=method), ref), method


def two_blob_map() -> tuple[np.ndarray, np.ndarray]:
    m = np.zeros((6, 8))
    m[1:3, 1:3] = 0.9  # A: 4 pixels, bbox (1, 1, 2, 2)
    m[3:5, 4:7] = 0.5  # B: 6 pixels, bbox (4, 3, 6, 4)
    return m, np.array([[1, 1, 2, 2]])  # GT = A


def test_hand_built_two_blobs() -> None:
    m, gt = two_blob_map()
    res = sweep_map(m, gt, thresholds=(0.0, 0.3, 0.6, 0.95), deltas=(50,))
    # tau 0, 0.3: A and B; B is larger (6 px) and misses; A hits.  tau 0.6: A only.
    # tau 0.95: nothing.
    assert res.largest_box.tolist() == [[4, 3, 6, 4], [4, 3, 6, 4], [1, 1, 2, 2], [-1, -1, -1, -1]]
    assert res.largest_iou.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert res.hit_any[:, 0].tolist() == [True, True, True, False]


def test_largest_ties_go_to_the_larger_sum_then_raster_order() -> None:
    m = np.zeros((3, 7))
    m[0, 0:2] = 0.5  # 2 px, sum 1.0
    m[2, 3:5] = 0.75  # 2 px, sum 1.5: wins on the sum
    m[0, 5:7] = 0.75  # 2 px, sum 1.5, but its first pixel (0, 5) comes first in raster order
    res = sweep_map(m, np.array([[0, 0, 1, 0]]), thresholds=(0.1,), deltas=(50,))
    assert res.largest_box.tolist() == [[5, 0, 6, 0]]


def test_accumulator_curves_and_maxima() -> None:
    m, gt = two_blob_map()
    acc = SweepAccumulator(thresholds=(0.0, 0.3, 0.6, 0.95))
    acc.add(m, gt)  # normalised: A = 1, B = 0.5 / 0.9 = 0.56, so A stays at tau 0.95 too
    acc.add(np.zeros((6, 8)), gt)  # constant map: normalised to zeros, never foreground
    res = acc.results()
    curves = res["curves"]
    assert list(curves.columns) == [
        "tau", "boxacc_30", "boxacc_50", "boxacc_70", "boxacc_v2_30", "boxacc_v2_50", "boxacc_v2_70",
    ]  # fmt: skip
    assert curves["boxacc_50"].tolist() == [0.0, 0.0, 50.0, 50.0]
    assert curves["boxacc_v2_50"].tolist() == [50.0, 50.0, 50.0, 50.0]
    assert res["maxboxacc"] == 50.0 and res["best_tau"] == 0.6
    assert res["maxboxacc_v2"] == 50.0 and res["best_tau_v2"] == {30: 0.0, 50: 0.0, 70: 0.0}
    assert res["images"] == 2 and res["pxap"] is None


def test_normalisation_is_min_max() -> None:
    cam = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert normalize_map(cam).tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert normalize_map(np.full((2, 2), 3.0)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="finite"):
        normalize_map(np.array([[np.nan, 1.0]]))


def test_scale_boxes_truncates() -> None:
    # 10 * 224/400 = 5.6 -> 5; 20 * 224/300 = 14.93 -> 14; 399 * .56 = 223.44; 299 * 224/300 = 223.25
    assert scale_boxes(np.array([[10, 20, 399, 299]]), (400, 300)).tolist() == [[5, 14, 223, 223]]


def test_quantize_and_wsol_box_convention() -> None:
    m = np.zeros((4, 6))
    m[1:3, 1:4] = 1.0
    gt = np.array([[1, 1, 4, 3]])  # one pixel wider and taller than the blob
    inc = sweep_map(m, gt, (0.5,), (50,))
    wsol = sweep_map(m, gt, (0.5,), (50,), box_convention="wsol")
    # inclusive blob box (1, 1, 3, 2): IoU 6/12; wsol box (1, 1, 4, 3): IoU 1
    assert inc.largest_iou.tolist() == [0.5] and wsol.largest_iou.tolist() == [1.0]
    # 8 bits: 0.3 * 255 = 76.5 -> 76; threshold int(0.3 * 255) = 76: strict, 76 is background
    q = np.array([[0.3, 1.0]])
    assert sweep_map(q, np.array([[0, 0, 0, 0]]), (0.3,), (50,), quantize=True).largest_box.tolist() == [[1, 0, 1, 0]]
    assert sweep_map(q, np.array([[0, 0, 0, 0]]), (0.29,), (50,), quantize=True).largest_box.tolist() == [[0, 0, 1, 0]]


def test_pxap_hand_computed() -> None:
    acc = SweepAccumulator(thresholds=(0.0, 0.5))
    cam = np.array([[0.0, 0.25, 0.75, 1.0, 0.9]])
    mask = np.array([[0, 1, 0, 1, 255]])  # the last pixel is ignored
    acc.add(cam, np.array([[0, 0, 4, 0]]), mask)
    # edges 0, .5, 1, 2, 3: positives {.25, 1}, negatives {0, .75}; from the top:
    # tp = 0,1,1,2  fp = 0,0,1,2  precision = -,1,.5,.5  recall = 0,.5,.5,1
    # AP = 1 * .5 + .5 * 0 + .5 * .5 = .75
    assert acc.results()["pxap"] == pytest.approx(75.0)
    assert acc.results()["pxap_images"] == 1


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="increasing"):
        sweep_map(np.zeros((2, 2)), np.array([[0, 0, 1, 1]]), (0.5, 0.2))
    with pytest.raises(ValueError, match="GT box"):
        sweep_map(np.zeros((2, 2)), np.zeros((0, 4)), (0.5,))
    with pytest.raises(ValueError, match="no image"):
        SweepAccumulator().results()


# --- the compiled kernel (bench.core.sweep_kernel) against per-threshold labelling ------------

# Values k / 2**20: they look continuous, yet every component's map sum is exact in float64 in
# any order of addition, so the size tie-break cannot depend on the summation order.
FINE_DYADIC = st.integers(0, 2**20).map(lambda k: k / 2**20)


@st.composite
def compiled_cases(draw):  # noqa: ANN001, ANN201
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    kind = draw(st.sampled_from(["palette", "fine", "blocks"]))
    if kind == "palette":  # few distinct values: plateaus, equal-size components, sum ties
        palette = draw(st.lists(FINE_DYADIC, min_size=1, max_size=4))
        m = np.array(draw(st.lists(st.sampled_from(palette), min_size=h * w, max_size=h * w))).reshape(h, w)
    elif kind == "fine":
        m = np.array(draw(st.lists(FINE_DYADIC, min_size=h * w, max_size=h * w))).reshape(h, w)
    else:  # blocky maps: large plateaus touching diagonally and along edges
        bh, bw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        low = np.array(draw(st.lists(st.integers(0, 8), min_size=bh * bw, max_size=bh * bw))).reshape(bh, bw) / 8
        m = np.kron(low, np.ones((h // bh + 1, w // bw + 1)))[:h, :w]
    boxes = []
    for _ in range(draw(st.integers(1, 3))):
        x0, x1 = sorted(draw(st.lists(st.integers(0, w - 1), min_size=2, max_size=2)))
        y0, y1 = sorted(draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2)))
        boxes.append([x0, y0, x1, y1])
    grid = draw(st.sampled_from(["fine", "default", "random"]))
    if grid == "fine":
        thr = FINE_THRESHOLDS
    elif grid == "default":
        thr = DEFAULT_THRESHOLDS
    else:  # arbitrary increasing thresholds, some exactly on map values (ties at the threshold)
        pool = sorted(set(np.unique(m).tolist()) | set(draw(st.lists(FINE_DYADIC, max_size=6))))
        pool = [t for t in pool if t < 1]
        thr = np.array(sorted(set(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=10))))) if pool else np.array([0.0])
    return m, np.array(boxes), thr


@pytest.mark.skipif(not sweep_kernel.AVAILABLE, reason="numba is not installed")
@settings(max_examples=300, deadline=None)
@given(compiled_cases(), st.booleans(), st.sampled_from(["inclusive", "wsol"]))
def test_compiled_sweep_equals_per_threshold_labelling(case, quantize: bool, convention: str) -> None:  # noqa: ANN001
    m, gt, thr = case
    deltas = (10, 30, 50, 70, 90, 100)
    ref = reference_sweep_map(m, gt, thr, deltas, quantize=quantize, box_convention=convention)
    got = sweep_map(m, gt, thr, deltas, quantize=quantize, box_convention=convention, method="compiled")
    assert got.largest_box.shape == (thr.size, 4) and got.hit_any.shape == (thr.size, len(deltas))
    assert same(got, ref)


@pytest.mark.skipif(not sweep_kernel.AVAILABLE, reason="numba is not installed")
def test_compiled_on_cam_sized_smooth_maps() -> None:
    """224 x 224 CAM-like maps (14 x 14 grids upsampled) on both grids, float and 8-bit."""
    rng = np.random.default_rng(7)
    gt = np.array([[28, 37, 168, 186], [100, 20, 210, 90]])
    for k in range(3):
        low = np.maximum(rng.standard_normal((14, 14)), 0.0)
        m = normalize_map(np.kron(low, np.ones((16, 16))) + np.round(rng.random((224, 224)) * 64) / 2**12)
        for thr, quantize in ((DEFAULT_THRESHOLDS, False), (DEFAULT_THRESHOLDS, True), (FINE_THRESHOLDS[::7], k == 0)):
            ref = reference_sweep_map(m, gt, thr, quantize=quantize, box_convention="wsol" if quantize else "inclusive")
            got = sweep_map(m, gt, thr, quantize=quantize, box_convention="wsol" if quantize else "inclusive", method="compiled")
            assert same(got, ref)


@pytest.mark.skipif(not sweep_kernel.AVAILABLE, reason="numba is not installed")
def test_compiled_hand_built_nested_components() -> None:
    # Two peaks that join at 0.4 into one component whose box covers both.
    m = np.array(
        [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.9, 0.4, 0.4, 0.7, 0.0],
            [0.0, 0.9, 0.0, 0.0, 0.7, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.7, 0.0],
        ]
    )
    gt = np.array([[1, 1, 4, 3]])
    res = sweep_map(m, gt, (0.3, 0.5, 0.8, 0.95), (50,), method="compiled")
    # 0.3: one component (1,1)-(4,3), 7 px; 0.5: left 2 px, right 3 px -> right is largest;
    # 0.8: left only; 0.95: nothing.
    assert res.largest_box.tolist() == [[1, 1, 4, 3], [4, 1, 4, 3], [1, 1, 1, 2], [-1, -1, -1, -1]]
    # IoUs: 1; right (1 x 3 = 3 px box) vs GT 12 px: 3/12; left 2/12; none 0.
    assert res.largest_iou.tolist() == [1.0, 0.25, 2 / 12, 0.0]
    # some box with IoU >= 0.5 only at 0.3
    assert res.hit_any[:, 0].tolist() == [True, False, False, False]


def test_auto_without_numba_gives_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy fallback (what 'auto' runs when numba is missing) equals the compiled default."""
    rng = np.random.default_rng(3)
    m = np.round(rng.random((40, 50)) * 16) / 16
    gt = np.array([[5, 5, 30, 20]])
    default = sweep_map(m, gt, FINE_THRESHOLDS)
    monkeypatch.setattr(sweep_kernel, "AVAILABLE", False)
    assert sweep_backend() == "numpy"
    assert same(sweep_map(m, gt, FINE_THRESHOLDS), default)
    with pytest.raises(ValueError, match="numba"):
        sweep_map(m, gt, FINE_THRESHOLDS, method="compiled")


@pytest.mark.skipif(not sweep_kernel.AVAILABLE, reason="numba is not installed")
def test_compiled_refuses_non_finite_maps() -> None:
    m = np.zeros((3, 3))
    m[1, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        sweep_map(m, np.array([[0, 0, 1, 1]]), (0.5,), method="compiled")


def test_count_then_add_counts_equals_add() -> None:
    """SweepAccumulator.count + add_counts (the worker-process path) adds exactly what add does."""
    rng = np.random.default_rng(5)
    via_add, via_counts = SweepAccumulator(), SweepAccumulator()
    for k in range(4):
        cam = np.kron(rng.random((4, 5)), np.ones((6, 6)))
        gt = np.array([[2, 3, 14 + k, 20]])
        mask = (rng.random(cam.shape) > 0.5).astype(np.uint8)
        res = via_add.add(cam, gt, mask if k % 2 else None)
        res2, counts = via_counts.count(cam, gt, mask if k % 2 else None)
        assert same(res, res2)
        assert (counts.pos_hist is None) == (k % 2 == 0)
        via_counts.add_counts(counts)
    a, b = via_add.results(), via_counts.results()
    assert a["curves"].equals(b["curves"]) and a["pxap"] == b["pxap"] and a["pxap_images"] == b["pxap_images"] == 2
    with pytest.raises(ValueError, match="do not fit"):
        SweepAccumulator(thresholds=(0.5,)).add_counts(counts)
