"""Tests of bench.analysis.stats: exact McNemar p-values and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bench.analysis.stats as stats_mod
from bench.core.records import RECORD_COLUMNS
from bench.analysis.stats import mcnemar_exact, paired_bootstrap, paired_comparison


@pytest.mark.parametrize(
    ("b01", "b10", "p"),
    [
        (6, 0, 2 * 0.5**6),  # 0.03125
        (0, 6, 2 * 0.5**6),
        (1, 1, 1.0),
        (0, 0, 1.0),  # no discordant pair
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # 2 P(X <= 2), X ~ Bin(10, 1/2) = 0.109375
        (0, 1, 1.0),  # 2 * 0.5 = 1
    ],
)
def test_mcnemar_hand_computed(b01: int, b10: int, p: float) -> None:
    # 5 concordant hits and 3 concordant misses around the discordant pairs
    a = [0] * b01 + [1] * b10 + [1] * 5 + [0] * 3
    b = [1] * b01 + [0] * b10 + [1] * 5 + [0] * 3
    got = mcnemar_exact(a, b)
    assert got[:2] == (b01, b10)
    assert got[2] == pytest.approx(p, rel=1e-12)


def test_mcnemar_rejects_non_binary_and_mismatched() -> None:
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1], [1, 1])
    with pytest.raises(ValueError, match="length"):
        mcnemar_exact([0, 1], [1])


def test_bootstrap_degenerate_cases() -> None:
    assert paired_bootstrap([1, 0, 1], [1, 0, 1]) == (0.0, 0.0, 0.0)
    assert paired_bootstrap([0, 0, 0, 0], [1, 1, 1, 1]) == (100.0, 100.0, 100.0)  # B - A


def test_bootstrap_is_seeded_and_near_the_normal_interval() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(400) < 0.6
    b = np.where(rng.random(400) < 0.2, ~a, a)  # 20 % discordant
    d1 = paired_bootstrap(a, b, n=2000, seed=7)
    assert d1 == paired_bootstrap(a, b, n=2000, seed=7)
    assert d1 != paired_bootstrap(a, b, n=2000, seed=8)
    delta, lo, hi = d1
    diff = b.astype(float) - a.astype(float)
    assert delta == pytest.approx(100 * diff.mean())
    se = 100 * diff.std() / np.sqrt(diff.size)
    assert lo < delta < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.5, rng.random(300) < 0.55
    whole = paired_bootstrap(a, b, n=500, seed=1)
    monkeypatch.setattr(stats_mod, "_CHUNK_CELLS", 300 * 7)  # 7 resamples per draw
    assert paired_bootstrap(a, b, n=500, seed=1) == whole


def records(rows: list[dict]) -> pd.DataFrame:
    base = {c: "" for c in RECORD_COLUMNS}
    base.update(status="ok", blacklisted=0, width=10, height=10, gtk_hit=0, degenerate=0, label=0)
    frame = pd.DataFrame([{**base, **r} for r in rows], columns=RECORD_COLUMNS)
    for col in ("label", "blacklisted", "width", "height", "gtk_hit", "degenerate"):
        frame[col] = frame[col].astype(np.int64)
    frame["gtk_iou"] = pd.to_numeric(frame["gtk_iou"].replace("", np.nan))  # as read_records gives it
    return frame


def test_paired_comparison_signs_and_denominators() -> None:
    # Image i1: A wrong class, B right; i2 both right; i3 failed in A (left out); i4 blacklisted
    # (counts for classification only).
    box = "0 0 5 5;0 0 5 5;0 0 5 5;0 0 5 5;0 0 5 5"
    a = records([
        {"image_id": "i1", "guess_classes": "1 2 3 4 5", "guess_hits": "0 0 0 0 0", "guess_boxes": box},
        {"image_id": "i2", "guess_classes": "0 2 3 4 5", "guess_hits": "1 0 0 0 0", "guess_boxes": box, "gtk_hit": 1},
        {"image_id": "i3", "status": "failed"},
        {"image_id": "i4", "blacklisted": 1, "guess_classes": "0 1 2 3 4", "guess_hits": "0 0 0 0 0", "guess_boxes": box},
    ])  # fmt: skip
    b = records([
        {"image_id": "i1", "guess_classes": "0 2 3 4 5", "guess_hits": "1 0 0 0 0", "guess_boxes": box, "gtk_hit": 1},
        {"image_id": "i2", "guess_classes": "0 2 3 4 5", "guess_hits": "1 0 0 0 0", "guess_boxes": box, "gtk_hit": 1},
        {"image_id": "i3", "guess_classes": "0 2 3 4 5", "guess_hits": "1 0 0 0 0", "guess_boxes": box},
        {"image_id": "i4", "blacklisted": 1, "guess_classes": "1 0 2 3 4", "guess_hits": "0 0 0 0 0", "guess_boxes": box},
    ])  # fmt: skip
    table = paired_comparison(a, b, n=200).set_index("metric")
    top1 = table.loc["top1_cls_err"]
    # classification over i1, i2, i4: A errs on i1 only (i4 top-1 right), B errs on i4 only
    assert top1["images"] == 3 and top1["b01"] == 1 and top1["b10"] == 1
    assert top1["a"] == pytest.approx(100 / 3) and top1["delta"] == pytest.approx(0.0)
    loc = table.loc["top1_loc_err"]
    # localization over i1, i2: A misses i1, B hits both -> error 50 -> 0, delta -50
    assert loc["images"] == 2 and loc["a"] == 50.0 and loc["b"] == 0.0 and loc["delta"] == -50.0
    assert (loc["b01"], loc["b10"], loc["p_value"]) == (1, 0, 1.0)
