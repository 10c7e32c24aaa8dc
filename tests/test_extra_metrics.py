"""`bench run --extra-metrics`: the saliency scores of a single-label run's GT-class maps, beside its files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.cli import main
from bench.run.replay import RunReplay

QUIET = ["--workers", "0", "--batch-size", "8", "--no-progress"]


def test_extra_metrics_side_files_and_independent_pointing_check(tiny_val: Path, tmp_path: Path) -> None:
    plain, extra = tmp_path / "plain", tmp_path / "extra"
    args = ["run", "--suite", "ilsvrc_loc", "--model", "simplecnn_gap", "--data", str(tiny_val), "--save-cams", *QUIET]
    assert main([*args, "--out", str(plain)]) == 0
    assert main([*args, "--out", str(extra), "--extra-metrics"]) == 0
    run_plain, run_extra = plain / "ilsvrc_loc" / "simplecnn_gap", extra / "ilsvrc_loc" / "simplecnn_gap"
    # the run's own files are unchanged by the option
    assert (run_plain / "records.csv.gz").read_bytes() == (run_extra / "records.csv.gz").read_bytes()
    frame = pd.read_csv(run_extra / "saliency.csv.gz", dtype=str, keep_default_na=False)
    replay = RunReplay.open(run_extra)
    assert list(frame["image_id"]) == sorted(replay.records["image_id"])  # every image accounted for
    # pointing hits recomputed here with numpy: first maximum of the GT map, disc of radius 15 around it
    for item in replay.iter_maps(replay.run_image_ids()):
        m = item.maps[-1]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        region = np.zeros(m.shape, bool)
        for x1, y1, x2, y2 in item.gt.boxes:
            region[y1 : y2 + 1, x1 : x2 + 1] = True
        ys, xs = np.nonzero(region)
        hit = bool((((xs - x) ** 2 + (ys - y) ** 2) < 225).any())
        row = frame[frame["image_id"] == item.gt.image_id].iloc[0]
        assert (row["status"], row["hit"], int(row["point_x"]), int(row["point_y"])) == ("scored", str(int(hit)), x, y)
    summary = pd.read_json(run_extra / "saliency.json", typ="series")
    hits = frame["hit"].astype(int)
    assert summary["pointing_hits"] == hits.sum() and summary["pointing_pairs"] == len(frame)
    assert summary["maps_from"] == "map cache"
