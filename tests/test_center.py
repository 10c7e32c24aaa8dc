"""The model-free centre baseline: hand-computed map values, its box at a fixed threshold, and runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.boxes import largest_cc_box
from bench.core.center import DEFAULT_SIGMA, center_map, center_maps


def test_values_by_hand() -> None:
    """3 x 5 map, sigma 0.5 of the shorter side (3): s = 1.5 px, centre (row 1, column 2)."""
    m = center_map(3, 5, 0.5, dtype=torch.float64)
    s2 = 1.5**2
    assert m.shape == (3, 5)
    assert float(m[1, 2]) == 1.0
    assert math.isclose(float(m[0, 0]), math.exp(-(1 + 4) / (2 * s2)), rel_tol=1e-15)
    assert math.isclose(float(m[2, 3]), math.exp(-(1 + 1) / (2 * s2)), rel_tol=1e-15)
    # even side: the centre lies between pixels 1 and 2 of 4; the two middle pixels share the peak
    e = center_map(4, 4, 0.25, dtype=torch.float64)
    assert torch.equal(e, e.flip(0)) and torch.equal(e, e.flip(1)) and torch.equal(e, e.T)
    assert math.isclose(float(e[1, 1]), math.exp(-(0.25 + 0.25) / 2), rel_tol=1e-15)  # s = 1 px


def test_isotropic_and_sigma_of_shorter_side() -> None:
    """On a 40 x 100 map the profile along x and y is the same function of the distance in pixels."""
    m = center_map(41, 101, 0.2, dtype=torch.float64)  # odd sides: the centre is a pixel
    s = 0.2 * 41
    d = torch.arange(0, 20, dtype=torch.float64)
    expected = torch.exp(-(d**2) / (2 * s * s))
    assert torch.allclose(m[20, 50:70], expected, rtol=1e-14, atol=0)
    assert torch.allclose(m[20:40, 50], expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sigma", [0.10, 0.15, 0.25])
def test_fixed_threshold_box_side(sigma: float) -> None:
    """At 0.20 of the max the foreground is the disc r = s * sqrt(2 ln 5): box side 2r (+- 1 px of sampling)."""
    side = 224
    box, degenerate = largest_cc_box(center_map(side, side, sigma).numpy(), 0.2)
    assert not degenerate
    r = sigma * side * math.sqrt(2 * math.log(5))
    width = int(box[2] - box[0] + 1)
    assert abs(width - 2 * r) <= 2, (width, 2 * r)
    assert box[2] - box[0] == box[3] - box[1]  # square: isotropic
    assert box[0] + box[2] == side - 1  # centred (0-based inclusive)


def test_center_maps_batch() -> None:
    maps = center_maps(2, 3, (7, 9), DEFAULT_SIGMA)
    assert maps.shape == (2, 3, 7, 9) and maps.dtype == torch.float32
    assert torch.equal(maps[1, 2], center_map(7, 9))


def test_center_run_gt_only_and_wsol_row(tmp_path: Path, tiny_val: Path) -> None:
    """`bench run --model center` on the demo suite and a wsol suite: GT-known only, top-k n/a, and the
    "Center baseline" row of `bench table --wsol`."""
    from bench.cli import main
    from bench.report.tables import load_runs, paper_table, wsol_table
    from bench.run.engine import GT_ONLY

    out = tmp_path / "out"
    common = ["--model", "center", "--data", str(tiny_val), "--out", str(out), "--no-progress", "--workers", "0"]
    assert main(["run", "--suite", "demo", *common]) == 0
    assert main(["run", "--suite", "wsol_ilsvrc", "--step", "0.05", *common]) == 0
    run = out / "demo" / "center"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["gt_class_maps_only"] is True
    assert summary["top1_cls_err"] is None and summary["top5_loc_err"] is None
    assert summary["scored"] == 18 and summary["gt_known_loc_err"] is not None
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["head"] == "center" and manifest["model"]["center_sigma"] == DEFAULT_SIGMA
    table = paper_table(load_runs([out]), 2, suite="demo")
    row = table[table["label"] == "Center baseline"].iloc[0]
    assert row["top1_loc_err"] == GT_ONLY
    wsol = wsol_table(load_runs([out]))
    assert list(wsol["label"]) == ["Center baseline"]
    assert 0 <= float(wsol.iloc[0]["ilsvrc_maxboxacc_v2"]) <= 100


def test_center_refuses_a_method(tmp_path: Path, tiny_val: Path, capsys) -> None:
    from bench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--suite", "demo", "--model", "center", "--method", "gradcam", "--data", str(tiny_val), "--out", str(out)]) == 2
    assert "model-free" in capsys.readouterr().err
    assert not out.exists()


def test_gt_known_at_fixed_threshold_moves_with_sigma_but_the_sweep_barely() -> None:
    """A centred square object of side 0.5: the 0.20 box hits it (IoU >= 0.5) at sigma 0.10-0.15 and
    misses at 0.25 (box 0.90 of the side, IoU 0.31), while the best box over a threshold sweep is
    the same for both sigmas (the same family of centred squares)."""
    side = 224
    gt = np.array([56, 56, 167, 167])

    def iou(b: np.ndarray) -> float:
        iw = min(b[2], gt[2]) - max(b[0], gt[0]) + 1
        ih = min(b[3], gt[3]) - max(b[1], gt[1]) + 1
        inter = max(iw, 0) * max(ih, 0)
        area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)  # noqa: E731
        return inter / (area(b) + area(gt) - inter)

    at_02 = {s: iou(largest_cc_box(center_map(side, side, s).numpy(), 0.2)[0]) for s in (0.10, 0.25)}
    assert at_02[0.25] < 0.5 <= at_02[0.10]
    taus = np.arange(0.0, 1.0, 0.02)
    best = {s: max(iou(largest_cc_box(center_map(side, side, s).numpy(), t)[0]) for t in taus) for s in (0.10, 0.25)}
    assert best[0.10] > 0.95 and best[0.25] > 0.95
