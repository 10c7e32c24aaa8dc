"""Tests of bench.analysis.coco: COCO JSON from records and box AP through pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.analysis.coco import coco_eval, coco_json, inclusive_to_coco
from bench.core.records import RECORD_COLUMNS


def records(rows: list[dict]) -> pd.DataFrame:
    base = {c: "" for c in RECORD_COLUMNS}
    base.update(status="ok", blacklisted=0, width=50, height=40, gtk_hit=0, degenerate=0)
    frame = pd.DataFrame([{**base, **r} for r in rows], columns=RECORD_COLUMNS)
    for col in ("label", "blacklisted", "width", "height", "gtk_hit", "degenerate"):
        frame[col] = frame[col].astype(np.int64)
    frame["gtk_iou"] = pd.to_numeric(frame["gtk_iou"].replace("", np.nan))  # as read_records gives it
    return frame


def test_inclusive_to_coco_adds_one() -> None:
    assert inclusive_to_coco(np.array([[0, 0, 0, 0], [2, 3, 11, 7]])).tolist() == [[0, 0, 1, 1], [2, 3, 10, 5]]


GT = {
    "a": (3, np.array([[0, 0, 19, 9]])),
    "b": (3, np.array([[10, 10, 29, 29], [0, 0, 4, 4]])),
    "c": (0, np.array([[5, 5, 14, 14]])),
}


def test_json_layout() -> None:
    recs = records([
        {"image_id": "b", "label": 3, "top5_classes": "3 1 2 4 5", "top5_scores": "0.7 0.1 0.1 0.05 0.05",
         "guess_classes": "3 3 1", "guess_boxes": "10 10 29 29;0 0 4 4;1 1 2 2"},
        {"image_id": "a", "label": 3, "top5_classes": "3 0 1 2 4", "top5_scores": "0.9 0.05 0.02 0.02 0.01",
         "guess_classes": "3", "guess_boxes": "0 0 19 9"},
        {"image_id": "z", "label": 3, "status": "failed"},
        {"image_id": "c", "label": 0, "blacklisted": 1},
    ])  # fmt: skip
    data = coco_json(recs, GT, n_classes=5)
    json.dumps(data)  # serialisable
    assert [(im["id"], im["file_name"]) for im in data["images"]] == [(1, "a"), (2, "b")]
    assert [c["id"] for c in data["categories"]] == [0, 1, 2, 3, 4]
    assert [(g["image_id"], g["category_id"], g["bbox"], g["area"]) for g in data["annotations"]] == [
        (1, 3, [0, 0, 20, 10], 200), (2, 3, [10, 10, 20, 20], 400), (2, 3, [0, 0, 5, 5], 25),
    ]  # fmt: skip
    assert [(d["image_id"], d["category_id"], d["bbox"], d["score"]) for d in data["detections"]] == [
        (1, 3, [0, 0, 20, 10], 0.9), (2, 3, [10, 10, 20, 20], 0.7), (2, 3, [0, 0, 5, 5], 0.7),
        (2, 1, [1, 1, 2, 2], 0.1),
    ]  # fmt: skip


def test_perfect_detections_give_ap_one() -> None:
    recs = records([
        {"image_id": k, "label": lab, "top5_classes": f"{lab} 1 2 4 5", "top5_scores": "0.9 0.04 0.03 0.02 0.01",
         "guess_classes": " ".join([str(lab)] * len(bx)), "guess_boxes": ";".join(" ".join(map(str, b)) for b in bx)}
        for k, (lab, bx) in GT.items()
    ])  # fmt: skip
    res = coco_eval(recs, GT, n_classes=5)
    assert res["AP"] == pytest.approx(1.0) and res["AP50"] == pytest.approx(1.0)
    assert res["images"] == 3 and res["detections"] == 4


def test_hand_built_ap() -> None:
    gt = {
        "i1": (3, np.array([[0, 0, 19, 9]])),
        "i2": (3, np.array([[0, 0, 9, 9]])),
        "i3": (5, np.array([[0, 0, 9, 9]])),
    }
    recs = records([
        # i1: class 3 at IoU 117 / 200 = 0.585 (13 x 9 inside 20 x 10), score 0.9
        {"image_id": "i1", "label": 3, "top5_classes": "3 0 1 2 4", "top5_scores": "0.9 0.04 0.03 0.02 0.01",
         "guess_classes": "3", "guess_boxes": "0 0 12 8"},
        # i2: a perfect class-3 box, score 0.6
        {"image_id": "i2", "label": 3, "top5_classes": "3 0 1 2 4", "top5_scores": "0.6 0.2 0.1 0.05 0.05",
         "guess_classes": "3", "guess_boxes": "0 0 9 9"},
        # i3: a class-3 false positive (score 0.8), then the right class-5 box (0.1)
        {"image_id": "i3", "label": 5, "top5_classes": "3 5 0 1 2", "top5_scores": "0.8 0.1 0.05 0.03 0.02",
         "guess_classes": "3 5", "guess_boxes": "20 20 29 29;0 0 9 9"},
    ])  # fmt: skip
    res = coco_eval(recs, gt, n_classes=6)
    # Class 5: one perfect detection: AP 1 at every IoU threshold.
    # Class 3, 2 GT. IoU >= .5, .55: ranking i1 TP (0.9), i3 FP (0.8), i2 TP (0.6):
    #   interpolated precision 1 up to recall .5, 2/3 above: 101-point AP = (51 + 50 * 2/3) / 101.
    # IoU >= .6 ... .95 (8 thresholds): i1 is a false positive too: FP (0.9), FP (0.8), TP (0.6):
    #   precision 1/3 up to recall .5, 0 above: AP = 51 * (1/3) / 101.
    ap3_low = (51 + 50 * 2 / 3) / 101
    ap3_high = 51 * (1 / 3) / 101
    assert res["AP50"] == pytest.approx((ap3_low + 1) / 2)
    assert res["AP75"] == pytest.approx((ap3_high + 1) / 2)
    assert res["AP"] == pytest.approx(((2 * ap3_low + 8 * ap3_high) / 10 + 1) / 2)


def test_missing_gt_and_no_detections() -> None:
    recs = records([{"image_id": "q", "label": 1, "guess_classes": "1"}])
    with pytest.raises(ValueError, match="no GT"):
        coco_json(recs, {}, n_classes=3)
    res = coco_eval(recs, {"q": (1, np.array([[0, 0, 3, 3]]))}, n_classes=3)
    assert res == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "images": 1, "detections": 0}
