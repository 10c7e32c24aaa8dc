"""Tests of bench.core.metrics: devkit IoU, per-image evaluation and summaries, by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.core.metrics import summarize
from bench.core.scoring import best_iou, iou_inclusive, score_image

# ----------------------------------------------------------------------------- IoU


def test_single_pixel_box_has_area_one() -> None:
    assert iou_inclusive(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0])) == 1.0
    # (0,0,0,0) vs (0,0,1,0): intersection 1, union 1 + 2 - 1 = 2.
    assert iou_inclusive(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 0])) == 0.5


def test_iou_hand_values() -> None:
    a = np.array([0, 0, 9, 9])
    assert iou_inclusive(a, a) == 1.0
    assert iou_inclusive(a, np.array([5, 0, 14, 9])) == 50 / 150
    # Sharing one corner pixel: 1 / (25 + 25 - 1).
    assert iou_inclusive(np.array([0, 0, 4, 4]), np.array([4, 4, 8, 8])) == 1 / 49
    # Adjacent, not overlapping: iw = 4 - 5 + 1 = 0.
    assert iou_inclusive(np.array([0, 0, 4, 4]), np.array([5, 0, 9, 4])) == 0.0
    # Far apart in both directions (iw, ih < 0 would give a positive product): 0.
    assert iou_inclusive(np.array([0, 0, 4, 4]), np.array([10, 10, 12, 12])) == 0.0
    # Containment: 4 / 100.
    assert iou_inclusive(np.array([0, 0, 9, 9]), np.array([2, 2, 3, 3])) == 4 / 100


def test_iou_broadcasts_and_is_float64() -> None:
    a = np.array([[[0, 0, 9, 9]], [[0, 0, 0, 0]]])  # (2, 1, 4)
    b = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 0, 0]])  # (3, 4)
    out = iou_inclusive(a, b)
    assert out.shape == (2, 3) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.0, 50 / 150, 1 / 100], [1 / 100, 0.0, 1.0]])


def test_iou_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="x2 < x1"):
        iou_inclusive(np.array([5, 0, 4, 3]), np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        iou_inclusive(np.array([0, 0, 1]), np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="non-finite"):
        iou_inclusive(np.array([0, 0, np.nan, 1]), np.array([0, 0, 1, 1]))


def test_best_iou_is_max_over_gt() -> None:
    gt = np.array([[50, 50, 60, 60], [0, 0, 19, 9]])
    guesses = np.array([[0, 0, 9, 9], [55, 55, 60, 60], [100, 100, 101, 101]])
    np.testing.assert_array_equal(best_iou(guesses, gt), [0.5, 36 / 121, 0.0])
    with pytest.raises(ValueError, match="GT box"):
        best_iou(guesses, np.zeros((0, 4)))


def _pixel_iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Reference IoU by counting pixels of the two inclusive boxes on a grid."""
    grid_a = np.zeros((24, 24), bool)
    grid_b = np.zeros((24, 24), bool)
    grid_a[a[1]:a[3] + 1, a[0]:a[2] + 1] = True
    grid_b[b[1]:b[3] + 1, b[0]:b[2] + 1] = True
    return (grid_a & grid_b).sum() / (grid_a | grid_b).sum()


@st.composite
def boxes(draw: st.DrawFn) -> tuple[int, int, int, int]:
    x1, x2 = sorted(draw(st.lists(st.integers(0, 20), min_size=2, max_size=2)))
    y1, y2 = sorted(draw(st.lists(st.integers(0, 20), min_size=2, max_size=2)))
    return x1, y1, x2, y2


@settings(max_examples=300, deadline=None)
@given(a=boxes(), b=boxes())
def test_iou_properties(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    ab = float(iou_inclusive(np.array(a), np.array(b)))
    ba = float(iou_inclusive(np.array(b), np.array(a)))
    assert ab == ba
    assert 0.0 <= ab <= 1.0
    assert (ab == 1.0) == (a == b)
    assert float(iou_inclusive(np.array(a), np.array(a))) == 1.0
    assert ab == pytest.approx(_pixel_iou(a, b), rel=1e-12, abs=0)


# ----------------------------------------------------------------------------- evaluate_image


def test_iou_exactly_half_is_a_hit() -> None:
    ev = score_image(3, np.array([[0, 0, 19, 9]]), np.array([3]), np.array([[0, 0, 9, 9]]), None, iou_threshold=0.5)
    assert ev.guess_ious.tolist() == [0.5]  # 100 / 200
    assert ev.guess_hits.tolist() == [True]


def test_iou_just_below_half_is_a_miss() -> None:
    # 5000 / 10001 = 0.49995...
    ev = score_image(3, np.array([[0, 0, 10000, 0]]), np.array([3]), np.array([[0, 0, 4999, 0]]), None, iou_threshold=0.5)
    assert ev.guess_ious[0] == 5000 / 10001
    assert ev.guess_hits.tolist() == [False]


def test_hit_on_second_gt_box() -> None:
    gt = np.array([[50, 50, 60, 60], [0, 0, 19, 9]])  # a bad one, a good one
    ev = score_image(7, gt, np.array([7]), np.array([[0, 0, 9, 9]]), np.array([0, 0, 19, 9]), iou_threshold=0.5)
    assert ev.guess_hits.tolist() == [True]
    assert ev.gtk_iou == 1.0 and ev.gtk_hit is True


def test_wrong_class_never_localizes() -> None:
    gt = np.array([[10, 10, 30, 40]])
    ev = score_image(7, gt, np.array([3, 7]), np.array([[10, 10, 30, 40], [0, 0, 1, 1]]), None, iou_threshold=0.5)
    assert ev.guess_ious.tolist() == [1.0, 0.0]  # the IoU is still reported
    assert ev.guess_hits.tolist() == [False, False]


def test_gt_known_box_none_and_miss() -> None:
    gt = np.array([[0, 0, 9, 9]])
    ev = score_image(1, gt, np.array([1]), np.array([[0, 0, 9, 9]]), None, iou_threshold=0.5)
    assert math.isnan(ev.gtk_iou) and ev.gtk_hit is False
    ev = score_image(1, gt, np.array([1]), np.array([[0, 0, 9, 9]]), np.array([5, 0, 14, 9]), iou_threshold=0.5)
    assert ev.gtk_iou == 50 / 150 and ev.gtk_hit is False


def test_top1_miss_top5_hit() -> None:
    gt = np.array([[0, 0, 9, 9]])
    classes = np.array([1, 2, 7, 4, 5])  # the GT class 7 is third
    guess_boxes = np.array([[0, 0, 9, 9]] * 5)
    ev = score_image(7, gt, classes, guess_boxes, np.array([0, 0, 9, 9]), iou_threshold=0.5)
    assert ev.guess_hits.tolist() == [False, False, True, False, False]
    s = summarize(labels=np.array([7]), ok=np.array([True]), blacklisted=np.array([False]),
                  guess_classes=classes[None], guess_hits=ev.guess_hits[None],
                  gtk_iou=np.array([ev.gtk_iou]), gtk_hit=np.array([ev.gtk_hit]), degenerate=np.array([False]))
    assert (s["top1_cls_err"], s["top5_cls_err"]) == (100.0, 0.0)
    assert (s["top1_loc_err"], s["top5_loc_err"]) == (100.0, 0.0)


def test_mismatched_guess_arrays_raise() -> None:
    with pytest.raises(ValueError, match="guess"):
        score_image(1, np.array([[0, 0, 1, 1]]), np.array([1, 2]), np.array([[0, 0, 1, 1]]), None, iou_threshold=0.5)


# ----------------------------------------------------------------------------- summarize


def test_tight_loose_repeated_classes_for_cls_error() -> None:
    # Guess classes c1, c1, c2, c2, c3 with c1=10, c2=20, c3=30; labels: 30 (5th), 20 (3rd/4th),
    # 10 (1st), 40 (absent).
    classes = np.array([[10, 10, 20, 20, 30]] * 4)
    n = 4
    s = summarize(labels=np.array([30, 20, 10, 40]), ok=np.ones(n, bool), blacklisted=np.zeros(n, bool),
                  guess_classes=classes, localized=False)
    assert s["top1_cls_err"] == 75.0  # only label 10 is first
    assert s["top5_cls_err"] == 25.0  # only label 40 is missing


def batch() -> dict[str, np.ndarray]:
    """Six images, by hand (see test_summarize_hand_batch for the expected numbers)."""
    c = [1, 2, 3, 4, 5]
    return dict(
        labels=np.array([1, 2, 9, 1, 1, 3]),
        ok=np.array([True, True, True, True, False, True]),
        blacklisted=np.array([False, False, False, True, False, False]),
        guess_classes=np.array([c, c, c, c, c, [2, 2, 3, 3, 4]]),
        guess_hits=np.array([
            [True, False, False, False, False],   # 0: top-1 hit
            [False, True, False, False, False],   # 1: top-5 hit only
            [False, False, False, False, False],  # 2: miss
            [False, False, False, False, False],  # 3: blacklisted (ignored for loc)
            [True, False, False, False, False],   # 4: failed (ignored everywhere)
            [False, False, False, True, False],   # 5: top-5 hit only
        ]),
        gtk_iou=np.array([0.8, 0.5, 0.3, np.nan, np.nan, 0.69]),
        gtk_hit=np.array([True, True, False, False, False, True]),  # the records' gtk_hit at IoU 0.5
        degenerate=np.array([False, False, True, False, True, False]),
    )


def test_summarize_hand_batch() -> None:
    s = summarize(**batch())
    assert s["images"] == 6
    assert s["scored"] == 5
    assert s["failed"] == 1
    assert s["blacklisted"] == 1
    assert s["degenerate_cams"] == 1  # image 4 is degenerate too, but failed
    # cls over images 0,1,2,3,5: top-1 right for 0 and 3; top-5 wrong only for 2 (label 9).
    assert s["top1_cls_err"] == pytest.approx(60.0)
    assert s["top5_cls_err"] == pytest.approx(20.0)
    # loc over images 0,1,2,5.
    assert s["loc_images"] == 4
    assert s["top1_loc_err"] == pytest.approx(75.0)
    assert s["top5_loc_err"] == pytest.approx(25.0)
    # gtk IoUs 0.8, 0.5, 0.3, 0.69: only 0.3 < 0.5.
    assert s["gt_known_loc_err"] == pytest.approx(25.0)
    assert s["mean_iou"] == pytest.approx((0.8 + 0.5 + 0.3 + 0.69) / 4)
    assert s["iou_ge_0.3"] == pytest.approx(100.0)  # 0.3 >= 0.3
    assert s["iou_ge_0.5"] == pytest.approx(75.0)  # 0.8, 0.5, 0.69 (= 100 - gt_known_loc_err)
    assert s["iou_ge_0.7"] == pytest.approx(25.0)  # 0.69 < 0.7
    json.dumps(s)  # plain Python numbers


def test_summarize_all_failed_gives_none() -> None:
    b = batch()
    b["ok"] = np.zeros(6, bool)
    s = summarize(**b)
    assert (s["images"], s["scored"], s["failed"], s["blacklisted"], s["degenerate_cams"]) == (6, 0, 6, 0, 0)
    assert s["loc_images"] == 0
    for key in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err",
                "mean_iou", "iou_ge_0.3", "iou_ge_0.5", "iou_ge_0.7"):
        assert s[key] is None, key


def test_summarize_all_blacklisted_keeps_cls() -> None:
    b = batch()
    b["blacklisted"] = np.ones(6, bool)
    s = summarize(**b)
    assert s["blacklisted"] == 5 and s["loc_images"] == 0
    assert s["top1_cls_err"] == pytest.approx(60.0)
    assert s["top1_loc_err"] is None and s["mean_iou"] is None and s["iou_ge_0.5"] is None


def test_summarize_empty_batch() -> None:
    s = summarize(labels=np.zeros(0, int), ok=np.zeros(0, bool), blacklisted=np.zeros(0, bool),
                  guess_classes=np.zeros((0, 5), int), guess_hits=np.zeros((0, 5), bool),
                  gtk_iou=np.zeros(0), gtk_hit=np.zeros(0, bool), degenerate=np.zeros(0, bool))
    assert (s["images"], s["scored"], s["loc_images"]) == (0, 0, 0)
    assert s["top1_cls_err"] is None and s["top5_loc_err"] is None


def test_summarize_classification_only() -> None:
    b = batch()
    s = summarize(labels=b["labels"], ok=b["ok"], blacklisted=b["blacklisted"],
                  guess_classes=b["guess_classes"], localized=False)
    assert s["top1_cls_err"] == pytest.approx(60.0) and s["top5_cls_err"] == pytest.approx(20.0)
    assert (s["scored"], s["failed"], s["blacklisted"]) == (5, 1, 1)
    for key in ("degenerate_cams", "top1_loc_err", "top5_loc_err", "gt_known_loc_err", "mean_iou",
                "iou_ge_0.3", "iou_ge_0.5", "iou_ge_0.7", "loc_images"):
        assert s[key] is None, key


def test_summarize_fewer_than_five_guesses() -> None:
    s = summarize(labels=np.array([1, 2]), ok=np.ones(2, bool), blacklisted=np.zeros(2, bool),
                  guess_classes=np.array([[1], [1]]), guess_hits=np.array([[True], [False]]),
                  gtk_iou=np.array([0.9, 0.1]), gtk_hit=np.array([True, False]), degenerate=np.zeros(2, bool))
    assert s["top1_cls_err"] == s["top5_cls_err"] == 50.0
    assert s["top1_loc_err"] == s["top5_loc_err"] == 50.0


def test_summarize_rejects_missing_gt_known_iou_on_loc_image() -> None:
    b = batch()
    b["gtk_iou"][0] = np.nan
    with pytest.raises(ValueError, match="gtk_iou"):
        summarize(**b)
    b = batch()
    del b["guess_hits"]
    with pytest.raises(ValueError, match="guess_hits"):
        summarize(**b)


# ----------------------------------------------------------------------------- breakdowns
def test_gt_area_fraction_is_the_largest_inclusive_box_over_the_image() -> None:
    from bench.core.scoring import gt_area_fraction

    # (0,0,9,9) covers 10x10 = 100 of a 20x20 image; (0,0,19,1) covers 20x2 = 40: the largest wins.
    assert gt_area_fraction(np.array([[0, 0, 19, 1], [0, 0, 9, 9]]), (20, 20)) == 100 / 400
    assert gt_area_fraction(np.array([[0, 0, 0, 0]]), (3, 5)) == 1 / 15  # inclusive: one pixel
    assert gt_area_fraction(np.array([[0, 0, 4, 2]]), (3, 5)) == 1.0  # the whole image


def test_object_size_bins_edges() -> None:
    from bench.core.metrics import object_size

    bins = object_size(np.array([0.0999, 0.1, 0.3, 0.5, 0.5001, np.nan]))
    assert bins.tolist() == ["small", "medium", "medium", "medium", "large", ""]


def test_breakdowns_are_summaries_of_each_group() -> None:
    from bench.core.metrics import breakdowns

    b = batch()
    # Sizes: images 0, 2 small; 1, 5 large; 3 medium (blacklisted); 4 failed (no size).
    b["gt_area_frac"] = np.array([0.05, 0.9, 0.01, 0.2, np.nan, 0.6])
    out = breakdowns(b, class_ids=[f"c{i}" for i in range(10)])
    small, large, medium = out["by_size"]["small"], out["by_size"]["large"], out["by_size"]["medium"]
    assert list(out["by_size"]) == ["small", "medium", "large"]
    # small = images 0 (label 1, top-1 class 1: cls right, top-1 loc hit, gtk 0.8) and 2 (label 9: all wrong).
    assert (small["images"], small["scored"], small["loc_images"]) == (2, 2, 2)
    assert small["top1_cls_err"] == 50.0 and small["top5_cls_err"] == 50.0
    assert small["top1_loc_err"] == 50.0 and small["gt_known_loc_err"] == 50.0
    assert small["mean_iou"] == pytest.approx((0.8 + 0.3) / 2)
    # large = images 1 (top-5 loc hit, gtk 0.5) and 5 (top-5 loc hit, gtk 0.69).
    assert large["top1_loc_err"] == 100.0 and large["top5_loc_err"] == 0.0 and large["gt_known_loc_err"] == 0.0
    # medium = image 3 only, blacklisted: classification counts it, localization does not.
    assert medium["scored"] == 1 and medium["loc_images"] == 0 and medium["top1_loc_err"] is None
    # by class: label 1 = images 0, 3, 4 (4 failed, 3 blacklisted).
    c1 = out["by_class"]["c1"]
    assert (c1["images"], c1["scored"], c1["loc_images"]) == (3, 2, 1)
    assert c1["top1_cls_err"] == 0.0 and c1["top1_loc_err"] == 0.0
    assert set(out["by_class"]) == {"c1", "c2", "c3", "c9"}
