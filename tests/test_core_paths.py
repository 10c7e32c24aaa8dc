"""One rule, one place: regressions for the defects the single scoring path and replay fixed.

1. A non-default ``iou_threshold`` flows identically through the records, the summary, the paired
   comparison, the threshold curve and the paper tables (GT-known error used a fixed 0.5).
2. A ``--method gradcam`` run replays as Grad-CAM (replay drew plain CAM).
3. A run made with ``--images`` and ``--limit`` is rescored, swept and exported after its data folder
   moved (rescore, sweep and export reloaded the data without the images folder).
Plus: ``--suite`` takes a TOML file path; the map cache serves replay without the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.analysis.curves import threshold_curve
from bench.analysis.stats import paired_comparison
from bench.cli import main
from bench.core.gradmaps import localization_maps
from bench.core.maps import resize_maps
from bench.core.records import parse_boxes
from bench.data.synthetic import SynthConfig, ensure_dataset, val_root
from bench.data.transforms import EvalImages, InputTransform
from bench.report.tables import load_runs, paper_table
from bench.run.replay import RunReplay
from bench.run.results import RunDir

QUIET = ["--workers", "0", "--batch-size", "8", "--no-progress"]
SMALL = SynthConfig(train_per_class=4, val_per_class=8)  # 48 val images of the demo's 6 classes


@pytest.fixture(scope="module")
def small_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated data set, small: the demo nets' classes, 48 val images."""
    return val_root(ensure_dataset(SMALL, tmp_path_factory.mktemp("synth") / "data"))


@pytest.fixture(scope="module")
def strict_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo suite with iou_threshold = 0.7, as a user's own TOML file (not in protocols/)."""
    text = (Path(__file__).parents[1] / "protocols" / "demo.toml").read_text()
    text = text.replace('name = "demo"', 'name = "demo_iou70"').replace("iou_threshold = 0.5", "iou_threshold = 0.7")
    text = text.split("\n[suite]")[0]  # a plain protocol: models and data come from the flags
    path = tmp_path_factory.mktemp("suites") / "demo_iou70.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def strict_run(small_val: Path, strict_suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("strict")
    args = ["run", "--suite", str(strict_suite), "--model", "simplecnn_gap", "--data", str(small_val), "--out", str(out), "--save-cams", *QUIET]
    assert main(args) == 0
    return out / "demo_iou70" / "simplecnn_gap"


def test_suite_path_runs_and_records_its_protocol(strict_run: Path) -> None:
    manifest = json.loads((strict_run / "manifest.json").read_text())
    assert manifest["protocol"]["scoring"]["iou_threshold"] == 0.7
    assert manifest["protocol"]["protocol"]["name"] == "demo_iou70"


def test_non_default_iou_threshold_flows_through_summary_compare_curve_and_tables(strict_run: Path) -> None:
    run = RunDir(strict_run)
    records = run.read_records()
    summary = run.read_summary()
    ok = records[records["status"] == "ok"]
    n = len(ok)
    # By hand from the records' own IoUs at the protocol's 0.7 (not 0.5).
    gtk_err = 100.0 * int((ok["gtk_iou"] < 0.7).sum()) / n
    assert (ok["gtk_hit"] == (ok["gtk_iou"] >= 0.7).astype(int)).all()
    assert summary["gt_known_loc_err"] == pytest.approx(gtk_err, abs=1e-12)
    # The IoU statistics stay fixed IoU fractions: iou_ge_0.5 differs from 100 - GT-known error here.
    share_05 = 100.0 * int((ok["gtk_iou"] >= 0.5).sum()) / n
    assert summary["iou_ge_0.5"] == pytest.approx(share_05, abs=1e-12)
    assert gtk_err != pytest.approx(100.0 - share_05), "pick data where 0.5 and 0.7 disagree"
    top1 = 100.0 * sum(1 for h in ok["guess_hits"] if h.split()[0] == "0") / n
    assert summary["top1_loc_err"] == pytest.approx(top1, abs=1e-12)

    # Compare (paired statistics) uses the same per-image hits.
    compared = paired_comparison(records, records).set_index("metric")
    assert compared.loc["gt_known_loc_err", "a"] == pytest.approx(gtk_err, abs=1e-9)
    assert compared.loc["top1_loc_err", "a"] == pytest.approx(top1, abs=1e-9)

    # The threshold curve at the protocol's box threshold reproduces the summary (from the cache).
    curve = threshold_curve(strict_run, [0.1, 0.2, 0.3])
    at = curve.set_index("threshold").loc[0.2]
    assert at["gt_known_loc_acc"] == pytest.approx(100.0 - gtk_err, abs=1e-9)
    assert at["top1_loc_acc"] == pytest.approx(100.0 - top1, abs=1e-9)
    assert curve.attrs["iou_threshold"] == 0.7

    # Table 2 shows the summary's numbers.
    table = paper_table(load_runs([strict_run.parent.parent]), 2)
    row = table.iloc[0]
    assert row["top1_loc_err"] == pytest.approx(round(summary["top1_loc_err"], 2))


def test_replay_reads_the_map_cache_without_the_network(strict_run: Path) -> None:
    replay = RunReplay.open(strict_run)
    assert replay.source == "map cache" and replay.model is None
    ids = replay.run_image_ids()[:5]
    for maps in replay.iter_maps(ids):
        rec = replay.record(maps.gt.image_id)
        assert maps.top5_classes.tolist() == [int(c) for c in rec["top5_classes"].split()]
        assert maps.classes.tolist() == [maps.top5_classes[0], maps.gt.label]
        assert maps.maps.shape == (2, int(rec["height"]), int(rec["width"]))


@pytest.fixture(scope="module")
def gradcam_run(small_val: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gradcam")
    args = ["run", "--suite", "demo", "--model", "simplecnn_gap", "--method", "gradcam", "--data", str(small_val), "--out", str(out), "--limit", "6", *QUIET]
    assert main(args) == 0
    return out / "demo" / "simplecnn_gap-gradcam-limit6"  # --limit N: the folder says so


def test_gradcam_run_replays_as_gradcam(gradcam_run: Path) -> None:
    replay = RunReplay.open(gradcam_run)
    assert replay.source == "network" and replay.protocol.cam_method == "gradcam"
    ids = replay.run_image_ids()
    replayed = list(replay.iter_maps(ids, batch_size=4))
    # Independently: Grad-CAM of [top-1, GT] on each image alone (batch of one).
    spec = replay.model.spec
    transform = InputTransform(spec.input_size, spec.mean, spec.std, replay.protocol.interpolation, replay.protocol.antialias)
    data = EvalImages(replay.valset.images, list(range(len(ids))), transform)
    saw_negative_cam = False
    for i, maps in enumerate(replayed):
        item = data[i]
        x = item["image"][None]
        classes = torch.as_tensor([[int(maps.classes[0]), int(maps.classes[1])]])
        expected = resize_maps(localization_maps(replay.model, x, classes, "gradcam")[0], (maps.height, maps.width), "bilinear")
        scale = float(np.abs(expected).max())
        # Batch of 4 vs batch of 1: float32 convolutions may sum in another order (relative ~1e-6
        # per layer); 1e-4 of the map's range is far below any change of method.
        np.testing.assert_allclose(maps.maps, expected, rtol=0, atol=1e-4 * scale)
        assert maps.maps.min() >= 0.0  # Grad-CAM is ReLU'd; plain CAM of this net is not
        cam = localization_maps(replay.model, x, classes, "cam")
        saw_negative_cam |= bool((cam < 0).any())
        # The boxes recomputed from the replayed maps are the recorded ones (GT-known box).
        rec = replay.record(maps.gt.image_id)
        from bench.core.boxes import boxes_for_maps

        boxes, _ = boxes_for_maps(maps.maps, replay.protocol.thresholds, rule=replay.protocol.box_rule)
        assert boxes[1, replay.protocol.gt_known_threshold_index].tolist() == parse_boxes(rec["gtk_box"])[0].tolist()
    assert saw_negative_cam, "the check above needs a net whose CAM has negative values"


def test_images_and_limit_run_is_rescored_swept_and_exported_after_a_move(small_val: Path, tmp_path: Path) -> None:
    # A data root whose images live in a folder of their own name (found only through --images).
    root = tmp_path / "data"
    shutil.copytree(small_val, root, symlinks=False)
    (root / "val").rename(root / "pictures")
    out = tmp_path / "results"
    args = ["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(root), "--images", str(root / "pictures"),
            "--limit", "10", "--out", str(out), "--save-cams", *QUIET]  # fmt: skip
    assert main(args) == 0
    run = out / "demo" / "simplecnn_gap-limit10"
    before = RunDir(run).read_records()
    moved = tmp_path / "moved"
    root.rename(moved)
    assert main(["rescore", str(run), "--protocol", "demo", "--out", str(tmp_path / "again"), "--data", str(moved), "--no-progress"]) == 0
    again = RunDir(tmp_path / "again" / "demo" / "simplecnn_gap-limit10").read_records()
    pd.testing.assert_frame_equal(before, again)
    assert main(["sweep", str(run), "--data", str(moved), "--no-progress"]) == 0
    assert json.loads((run / "sweep.json").read_text())["images"] == 10
    assert main(["export", str(run), "--coco", "--data", str(moved)]) == 0
    # Without --data the moved data is not found, and the message says how to point at it.
    assert main(["sweep", str(run), "--no-progress"]) == 2


def test_records_and_summary_carry_size_and_class_breakdowns(strict_run: Path, small_val: Path) -> None:
    from bench.core.metrics import object_size
    from bench.data.open import open_dataset

    run = RunDir(strict_run)
    records, summary = run.read_records(), run.read_summary()
    data = open_dataset(small_val)
    gt = {g.image_id: g for g in data.images}
    for row in records.itertuples(index=False):  # the largest GT box over the image, by hand
        boxes = gt[row.image_id].boxes
        area = max((x2 - x1 + 1) * (y2 - y1 + 1) for x1, y1, x2, y2 in boxes.tolist())
        assert float(row.gt_area_frac) == pytest.approx(area / (row.width * row.height), abs=5e-7)
    sizes = object_size(records["gt_area_frac"].astype(float))
    assert {k: v["images"] for k, v in summary["by_size"].items()} == {s: int((sizes == s).sum()) for s in ("small", "medium", "large") if (sizes == s).any()}
    assert sum(v["images"] for v in summary["by_class"].values()) == summary["images"]
    assert set(summary["by_class"]) <= set(data.class_ids)
    # A group's numbers are the summary rule on its images: the classes' GT-known misses add up.
    misses = sum(round(v["gt_known_loc_err"] * v["loc_images"] / 100) for v in summary["by_class"].values())
    assert misses == round(summary["gt_known_loc_err"] * summary["loc_images"] / 100)


def test_select_on_chooses_the_box_threshold_of_a_top5_suite_on_the_other_split(small_val: Path, tmp_path: Path) -> None:
    """--select-on train-fullsup with cub_loc: the box threshold is the best top-1 localization
    threshold of the other split's run, and the reported run is scored at it. Both splits hold the
    same images here, so the reported run must reproduce the chosen accuracy exactly."""
    from bench.analysis.curves import DEFAULT_THRESHOLDS
    from bench.data.native_layouts import write_wsol_layout
    from bench.data.open import open_dataset

    source = open_dataset(small_val)
    root = tmp_path / "wsol_cub"
    for split in ("test", "train-fullsup"):
        write_wsol_layout(source, root, "CUB", split, class_folder=lambda i, c: f"{i + 1:03d}.c{i}")
    out = tmp_path / "results"
    assert main(["run", "--suite", "cub_loc", "--model", "simplecnn_gap", "--data", str(root), "--select-on", "train-fullsup", "--out", str(out), *QUIET]) == 0
    run = RunDir(out / "cub_loc" / "simplecnn_gap")
    side = RunDir(out / "cub_loc" / "simplecnn_gap@train-fullsup")
    summary = run.read_summary()
    assert summary["box_threshold_chosen_on"] == "train-fullsup"
    chosen = summary["box_threshold"]
    assert run.read_manifest()["protocol"]["guesses"]["threshold"] == chosen
    # The choice is the argmax (smallest of equals) of the other split's curve over the grid.
    curve = threshold_curve(side.path, DEFAULT_THRESHOLDS)
    best = curve["top1_loc_acc"].max()
    assert chosen == curve.loc[curve["top1_loc_acc"] == best, "threshold"].min()
    assert summary["box_threshold_top1_loc_acc_on_split"] == pytest.approx(best, abs=1e-12)
    # Same images on both splits: the reported run at that threshold has exactly that accuracy.
    assert 100.0 - summary["top1_loc_err"] == pytest.approx(best, abs=1e-9)
    # A tight/loose suite has fixed thresholds: --select-on refuses it with one line.
    assert main(["run", "--suite", "ilsvrc_loc_tight_loose", "--model", "simplecnn_gap", "--data", str(root), "--select-on", "train-fullsup", "--out", str(tmp_path / "tl"), *QUIET]) == 2


def test_replay_leaves_the_callers_autograd_mode_alone(gradcam_run: Path, small_val: Path, tmp_path: Path) -> None:
    """A replay generator suspended between images must not leave no_grad / inference mode on for
    the caller (torch's grad mode is thread state): CAM replays use inference mode, gradient ones no_grad."""
    assert main(["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(small_val), "--out", str(tmp_path), "--limit", "4", *QUIET]) == 0
    for run in (gradcam_run, tmp_path / "demo" / "simplecnn_gap-limit4"):
        replay = RunReplay.open(run)
        assert replay.source == "network"
        maps = replay.iter_maps(replay.run_image_ids(), batch_size=2)
        next(maps)  # suspended in the middle of a batch
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert torch.ones(1, requires_grad=True).mul(2).requires_grad
        maps.close()
