"""The saliency scores (bench.core.saliency, bench.metrics.pointing/saliency) against their references.

References run here on the same maps and regions: TorchRay's own ``PointingGame`` class (the
installed ``torchray`` package) and the ``quantus`` package's metrics. Plus hand-computed values
(energy pointing game axis order, constant maps, empty regions) and hypothesis properties.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.core import saliency as S
from bench.metrics.pointing import PointingGame
from bench.metrics.saliency import (
    AttributionLocalisation,
    EnergyPointingGame,
    LocalisationAUC,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    TopKIntersection,
)

torchray_pg = pytest.importorskip("torchray.benchmark.pointing_game")
quantus = pytest.importorskip("quantus")


def _random_case(seed: int, n: int = 12, h: int = 37, w: int = 53, levels: int = 3):
    """Integer-valued maps (many ties at the maximum) and box-union regions, some empty, some on the border."""
    g = np.random.default_rng(seed)
    maps = g.integers(0, levels, (n, h, w)).astype(np.float64)
    regions = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            continue  # empty region
        boxes = []
        for _ in range(g.integers(1, 3)):
            x1, y1 = g.integers(0, w), g.integers(0, h)
            boxes.append((x1, y1, g.integers(x1, w), g.integers(y1, h)))
        if kind == 1:
            boxes.append((0, 0, g.integers(0, w), 0))  # touches the top border
        if kind == 2:
            boxes.append((w - 3, h - 2, w - 1, h - 1))  # bottom-right corner
        regions[i] = S.boxes_to_mask(boxes, (h, w)).numpy()
    return maps, regions


# ---------------------------------------------------------------- pointing game vs TorchRay


def _torchray_point(m: np.ndarray) -> tuple[int, int]:
    """TorchRay's point: the flat argmax (numpy: the first maximum), as (u, v) = (x, y)."""
    flat = int(np.argmax(m.reshape(-1)))
    return flat % m.shape[1], flat // m.shape[1]


@pytest.mark.parametrize("tolerance", [0, 1, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_pointing_hits_equal_torchray(seed: int, tolerance: int) -> None:
    maps, regions = _random_case(seed)
    ref = torchray_pg.PointingGame(num_classes=4, tolerance=tolerance)
    expected = []
    for m, r in zip(maps, regions):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected.append(ref.evaluate(torch.from_numpy(r), _torchray_point(m)) == 1)
    points = S.argmax_points(torch.from_numpy(maps))
    assert [tuple(p) for p in points.tolist()] == [_torchray_point(m) for m in maps]
    got = S.pointing_hits(points, torch.from_numpy(regions), tolerance)
    assert got.tolist() == expected
    assert not any(got[i] for i in range(0, len(maps), 4))  # empty regions never hit


def test_pointing_ties_and_constant_map_pick_first_in_raster_order() -> None:
    m = torch.zeros(1, 40, 60)
    m[0, 30, 5] = 1.0
    m[0, 30, 50] = 1.0
    m[0, 35, 0] = 1.0
    assert S.argmax_points(m).tolist() == [[5, 30]]
    const = torch.full((1, 40, 60), 0.25)
    assert S.argmax_points(const).tolist() == [[0, 0]]
    # a region 15 px right of (0, 0) is not hit (15^2 < 15^2 is false), 14 px is
    far = S.boxes_to_mask([(15, 0, 20, 3)], (40, 60))[None]
    near = S.boxes_to_mask([(14, 0, 20, 3)], (40, 60))[None]
    pts = S.argmax_points(const)
    assert not S.pointing_hits(pts, far, 15).item()
    assert S.pointing_hits(pts, near, 15).item()
    # diagonal: (11, 11) is at distance^2 242 < 225? no; (10, 10): 200 < 225 yes
    assert not S.pointing_hits(pts, S.boxes_to_mask([(11, 11, 11, 11)], (40, 60))[None], 15).item()
    assert S.pointing_hits(pts, S.boxes_to_mask([(10, 10, 10, 10)], (40, 60))[None], 15).item()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20), st.integers(1, 20), st.floats(-5, 25), st.floats(-5, 25), st.integers(0, 6), st.data()
)
def test_pointing_hit_is_min_distance_below_tolerance(h, w, px, py, tol, data) -> None:
    cells = data.draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    region = np.array(cells, dtype=bool).reshape(h, w)
    ys, xs = np.nonzero(region)
    d2 = (xs - np.float32(px)).astype(np.float32) ** 2 + (ys - np.float32(py)).astype(np.float32) ** 2
    expected = bool(len(ys)) and bool((d2 < tol * tol).any())
    got = S.pointing_hits(torch.tensor([[px, py]]), torch.from_numpy(region)[None], tol).item()
    assert got == expected


def test_pointing_game_metric_equals_torchray_accuracy() -> None:
    maps, regions = _random_case(3, n=40)
    g = np.random.default_rng(3)
    classes = g.integers(0, 5, len(maps))
    classes[:5] = np.arange(5)  # every class has pairs: TorchRay's all-class mean is the same mean
    ref = torchray_pg.PointingGame(num_classes=5, tolerance=15)
    for m, r, c in zip(maps, regions, classes):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.aggregate(ref.evaluate(torch.from_numpy(r), _torchray_point(m)), int(c))
    metric = PointingGame(tolerance=15, classes=["a", "b", "c", "d", "e"])
    metric.update(torch.from_numpy(maps[:17]), torch.from_numpy(regions[:17]), torch.from_numpy(classes[:17]))
    ids = ["abcde"[c] for c in classes[17:]]
    metric.update(torch.from_numpy(maps[17:]), torch.from_numpy(regions[17:]), ids)
    out = metric.compute()
    assert out["pointing_accuracy"] == pytest.approx(float(ref.accuracy), abs=1e-12)
    assert out["pointing_hits"] == int(ref.hits.sum())
    assert out["pointing_pairs"] == int((ref.hits + ref.misses).sum())
    for i, c in enumerate("abcde"):
        assert out["pointing_class_accuracy"][c] == pytest.approx(float(ref.class_accuracies[i]), abs=1e-12)


def test_pointing_game_class_mean_hand_computed_and_state_merge() -> None:
    # class 0: 2 hits of 3; class 1: 0 of 1; class 2: no pairs (left out of the mean)
    h, w = 30, 30
    region = S.boxes_to_mask([(20, 20, 29, 29)], (h, w))
    hit_map = torch.zeros(h, w)
    hit_map[25, 25] = 1
    miss_map = torch.zeros(h, w)  # constant: point (0, 0), far from the region
    a = PointingGame(classes=3)
    a.update(torch.stack([hit_map, miss_map]), torch.stack([region, region]), [0, 0])
    b = PointingGame(classes=3)
    b.update(torch.stack([hit_map, miss_map]), torch.stack([region, region]), [0, 1])
    a.merge_state(b)
    out = a.compute()
    assert out["pointing_accuracy"] == pytest.approx((2 / 3 + 0) / 2)
    assert out["pointing_accuracy_overall"] == pytest.approx(2 / 4)
    assert out["pointing_classes"] == 2 and out["pointing_pairs"] == 4
    # a point passed directly (TorchRay's centre baseline uses (W/2, H/2))
    c = PointingGame(classes=1)
    c.update(None, region[None], [0], points=torch.tensor([[15.0, 15.0]]))
    assert c.compute()["pointing_hits"] == 1  # (20, 20) at distance^2 50 < 225


# ---------------------------------------------------------------- energy pointing game (hand-computed)


def test_energy_pointing_game_axis_order_and_relu() -> None:
    # maps are [y, x]; the box x 6..9, y 0..2. A transposed box (rows 6..9, columns 0..2, the bug of
    # two public implementations) would hold the other pixel's mass: 1/4 instead of 3/4
    h, w = 10, 10
    m = torch.zeros(1, h, w, dtype=torch.float64)
    m[0, 1, 7] = 3.0  # y=1, x=7: inside the box
    m[0, 7, 1] = 1.0  # y=7, x=1: inside the transposed box only
    m[0, 2, 2] = -5.0  # negative: removed by max(m, 0)
    box = S.boxes_to_mask([(6, 0, 9, 2)], (h, w))
    assert box.sum() == 4 * 3 and box[0, 6] and box[2, 9] and not box[3, 6] and not box[0, 5]
    assert S.energy_pointing_game(m, box[None]).item() == pytest.approx(3 / 4)
    assert S.energy_pointing_game(m, box.T[None]).item() == pytest.approx(1 / 4)
    # all-zero / all-negative map and empty region: undefined
    assert math.isnan(S.energy_pointing_game(-m.abs(), box[None]).item())
    assert math.isnan(S.energy_pointing_game(m, torch.zeros(1, h, w, dtype=torch.bool)).item())
    metric = EnergyPointingGame()
    metric.update(torch.cat([m, -m.abs()]), torch.stack([box, box]))
    assert metric.compute() == {"energy_pointing_game": pytest.approx(0.75), "energy_pointing_game_scored": 1, "energy_pointing_game_undefined": 1}


# ---------------------------------------------------------------- Quantus metrics vs the quantus package

QUANTUS = [
    ("RelevanceMassAccuracy", S.relevance_mass_accuracy, RelevanceMassAccuracy),
    ("RelevanceRankAccuracy", S.relevance_rank_accuracy, RelevanceRankAccuracy),
    ("TopKIntersection", S.top_k_intersection, TopKIntersection),
    ("AttributionLocalisation", S.attribution_localisation, AttributionLocalisation),
    ("AUC", S.localisation_auc, LocalisationAUC),
]


def _quantus(name: str, maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    metric = getattr(quantus, name)(disable_warnings=True)
    n = len(maps)
    x = np.zeros((n, 1) + maps.shape[1:], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(
            model=None,
            x_batch=x,
            y_batch=np.zeros(n, dtype=int),
            a_batch=maps[:, None].copy(),
            s_batch=regions[:, None].astype(np.float64),
        )
    return np.asarray(out, dtype=np.float64)


def _close(got: np.ndarray, ref: np.ndarray, maps: np.ndarray) -> None:
    assert np.array_equal(np.isnan(got), np.isnan(ref)), (got, ref)
    ok = ~np.isnan(ref)
    # float64 sums of H*W terms in two orders, after a division by the same max: n*eps*|terms| / |total|
    n = maps[0].size
    abs_sum = np.abs(maps).sum(axis=(1, 2))
    tol = 2 * n * np.finfo(np.float64).eps * abs_sum / np.maximum(np.abs(maps.sum(axis=(1, 2))), 1e-300)
    # attribution localisation's 1e-9 is added to a total normalised per map here, per batch in
    # Quantus: the two ratios differ by at most 1e-9 / (the smaller normalised total)
    batch_max = max(np.abs(maps).max(), 1e-300)
    tol = tol + S.ATTRIBUTION_LOCALISATION_EPS / np.maximum(abs_sum / batch_max, 1e-300)
    assert np.all(np.abs(got[ok] - ref[ok]) <= tol[ok] + 1e-12), (got, ref)


@pytest.mark.parametrize("name,rule,_cls", QUANTUS)
def test_quantus_metrics_equal_quantus_without_ties(name, rule, _cls) -> None:
    g = np.random.default_rng(5)
    maps, regions = _random_case(5, n=8)
    maps = maps + g.random(maps.shape)  # distinct values (ties probability 0), signed below
    maps[1::2] -= 1.5
    got = rule(torch.from_numpy(maps), torch.from_numpy(regions)).numpy()
    _close(got, _quantus(name, maps, regions), maps)


@pytest.mark.parametrize("name,rule,_cls", QUANTUS)
def test_quantus_metrics_equal_quantus_with_ties_constant_maps_empty_and_border_regions(name, rule, _cls) -> None:
    h, w = 36, 40  # 1440 pixels > k = 1000
    regions = np.zeros((5, h, w), dtype=bool)
    regions[0, :10, :] = True  # touches top, left and right borders
    regions[1, 30:, 35:] = True  # bottom-right corner
    regions[3, :, :20] = True
    regions[4, 5:9, 5:9] = True
    maps = np.zeros((5, h, w))
    maps[0, :10, :] = 2.0  # the tied maximum fills the region exactly (tie-order-free)
    maps[0, 20:, :] = 1.0
    maps[1] = 3.0  # constant map with an empty second map below
    maps[1, 30:, 35:] = 5.0
    maps[2] = 7.0  # constant map, empty region: every score NaN
    maps[3, :, :20] = -1.0  # negative region, positive outside
    maps[3, :, 20:] = 0.5
    maps[4] = np.arange(h * w).reshape(h, w) % 7  # ties throughout
    got = rule(torch.from_numpy(maps), torch.from_numpy(regions)).numpy()
    ref = _quantus(name, maps, regions)
    if name in ("RelevanceRankAccuracy", "TopKIntersection"):
        # numpy's default argsort is unstable: among tied values across the cut Quantus's choice
        # is unspecified; compare the maps where the cut does not split a tie
        keep = [0, 1, 2, 3] if name == "RelevanceRankAccuracy" else [2]
        _close(got[keep], ref[keep], maps[keep])
    else:
        _close(got, ref, maps)
    assert math.isnan(got[2])


def test_rank_scores_break_ties_in_raster_order() -> None:
    # constant map: the K (or k) first pixels in raster order are taken
    h, w = 40, 30
    region = np.zeros((1, h, w), dtype=bool)
    region[0, 10:20, :] = True  # 300 pixels, rows 10..19
    const = np.ones((1, h, w))
    assert S.relevance_rank_accuracy(torch.from_numpy(const), torch.from_numpy(region)).item() == 0.0
    # top-1000 = rows 0..32 and 10 pixels of row 33: 300 region pixels among them
    assert S.top_k_intersection(torch.from_numpy(const), torch.from_numpy(region)).item() == pytest.approx(300 / 1000)
    assert S.localisation_auc(torch.from_numpy(const), torch.from_numpy(region)).item() == 0.5
    with pytest.raises(ValueError, match="k < H\\*W"):
        S.top_k_intersection(torch.zeros(1, 10, 10), torch.ones(1, 10, 10, dtype=torch.bool))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 9), st.integers(2, 9))
def test_auc_and_rank_accuracy_equal_quantus_on_random_distinct_maps(seed, h, w) -> None:
    g = np.random.default_rng(seed)
    maps = g.permutation(h * w).reshape(1, h, w).astype(np.float64) - h * w / 3
    regions = g.random((1, h, w)) < 0.4
    for name in ("AUC", "RelevanceRankAccuracy", "RelevanceMassAccuracy"):
        rule = dict((q[0], q[1]) for q in QUANTUS)[name]
        got = rule(torch.from_numpy(maps), torch.from_numpy(regions)).numpy()
        _close(got, _quantus(name, maps, regions), maps)


def test_metric_objects_mean_defined_scores_and_merge() -> None:
    maps, regions = _random_case(7, n=8)
    maps = maps + np.random.default_rng(7).random(maps.shape)
    t_maps, t_regions = torch.from_numpy(maps), torch.from_numpy(regions)
    for _name, rule, cls in QUANTUS:
        scores = rule(t_maps, t_regions).numpy()
        a, b = cls(), cls()
        a.update(t_maps[:3], t_regions[:3])
        b.update(t_maps[3:], t_regions[3:])
        a.merge_state(b)
        out = a.compute()
        defined = scores[~np.isnan(scores)]
        assert out[cls.key] == pytest.approx(defined.mean(), rel=1e-12)
        assert out[f"{cls.key}_scored"] == len(defined)
        assert out[f"{cls.key}_undefined"] == int(np.isnan(scores).sum()) == 2  # the two empty regions


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 300), st.integers(1, 6))
def test_numpy_and_torch_paths_of_the_order_statistics_agree(seed, p, levels) -> None:
    # the torch path runs on GPUs; here both run on CPU against a direct count
    g = np.random.default_rng(seed)
    a = g.integers(0, levels, p).astype(np.float64)
    pos = g.random(p) < 0.5
    row, positive = torch.from_numpy(a), torch.from_numpy(pos)
    k = int(g.integers(1, p + 1))
    expected_kth = float(np.sort(a)[::-1][k - 1])
    assert S._kth_largest(row, k, use_numpy=True) == S._kth_largest(row, k, use_numpy=False) == expected_kth
    # mid-ranks: each value's rank is the mean of the positions its ties occupy
    ranks = np.array([(np.sum(a < v) + 1 + np.sum(a <= v)) / 2 for v in a])
    expected = float(ranks[pos].sum())
    assert S._mid_rank_sum(row, positive, use_numpy=True) == pytest.approx(expected, abs=1e-9)
    assert S._mid_rank_sum(row, positive, use_numpy=False) == pytest.approx(expected, abs=1e-9)


def test_relevance_mass_zero_total_is_inf_as_quantus_and_not_averaged() -> None:
    m = np.zeros((2, 6, 8))
    m[:, 0, 0], m[:, 5, 7] = 1.0, -1.0  # total 0, +1 inside the region
    region = np.zeros((2, 6, 8), dtype=bool)
    region[:, :2, :2] = True
    m[1, 0, 1] = 1.0  # second map: total 1, inside 2
    got = S.relevance_mass_accuracy(torch.from_numpy(m), torch.from_numpy(region)).numpy()
    ref = _quantus("RelevanceMassAccuracy", m, region)
    assert np.isinf(got[0]) and np.isinf(ref[0]) and got[1] == pytest.approx(ref[1]) == pytest.approx(2.0)
    metric = RelevanceMassAccuracy()
    metric.update(torch.from_numpy(m), torch.from_numpy(region))
    assert metric.compute() == {"relevance_mass_accuracy": pytest.approx(2.0), "relevance_mass_accuracy_scored": 1, "relevance_mass_accuracy_undefined": 1}
