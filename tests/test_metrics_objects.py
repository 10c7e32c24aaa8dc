"""bench.metrics: the in-memory metric objects give the CLI's numbers on the same maps.

Maps are made here (smooth random blobs, one per class), saved as files and scored by the CLI
(`bench score`, the wsol_* suites' sweep, `bench sweep`); the same arrays fed to the metric objects
must give the same records (frame equal), the same summary.json values and the same sweep.json
values, exactly (both sides are the same rules on the same floats). Maps at the CAM grid (7 x 7),
at 224 x 224, at an odd size (13 x 19) and at the image's own size. Two processes (gloo, CPU) give
what one gives. Small cases are computed by hand.
"""

from __future__ import annotations

import doctest
import importlib
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.cli import main
from bench.data.open import open_dataset
from bench.metrics import LocalizationError, MaxBoxAcc, MaxBoxAccV2, MetricInputError, PxAP, SWEEP_KEYS, box_accuracy, for_suite
from bench.run.results import RunDir

cv2 = pytest.importorskip("cv2")

QUIET = ["--no-progress"]
SHAPES = {"grid": (7, 7), "224": (224, 224), "odd": (13, 19)}


# ------------------------------------------------------------------------------------ fixtures


def blobs(rng: np.random.Generator, k: int, shape: tuple[int, int]) -> np.ndarray:
    """``k`` float32 maps: two Gaussian blobs each, on a smooth random floor (a 4 x 4 grid of
    random levels, bilinear: CAM-like, not pixel noise, whose thousands of contours would be slow)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((k, h, w), dtype=np.float32)
    for i in range(k):
        m = cv2.resize(rng.random((4, 4)), (w, h), interpolation=cv2.INTER_LINEAR) * 0.05
        for _ in range(2):
            cy, cx = rng.random() * h, rng.random() * w
            sy, sx = (0.1 + 0.3 * rng.random()) * h, (0.1 + 0.3 * rng.random()) * w
            m += rng.random() * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        out[i] = m
    return out


class Items:
    """One map set over the data: per image its GT, size (W, H), ranked classes, maps and scores."""

    def __init__(self, data: Path, shape: str, seed: int) -> None:
        valset = open_dataset(data)
        self.valset = valset
        rng = np.random.default_rng(seed)
        self.ids, self.labels, self.boxes, self.sizes, self.classes, self.maps, self.scores = [], [], [], [], [], [], []
        n_classes = len(valset.class_ids)
        for gt in valset.images:
            with Image.open(gt.path) as im:
                width, height = im.size
            order = rng.permutation(n_classes)  # the GT class somewhere among the ranks
            size = (height, width) if shape == "original" else SHAPES[shape]
            self.ids.append(gt.image_id)
            self.labels.append(gt.label)
            self.boxes.append(np.asarray(gt.boxes))
            self.sizes.append((width, height))
            self.classes.append(order.astype(np.int64))
            self.maps.append(blobs(rng, n_classes, size))
            self.scores.append(np.sort(rng.random(n_classes))[::-1].copy())

    def gt_maps(self) -> list[np.ndarray]:
        return [m[int(np.flatnonzero(c == label)[0])] for m, c, label in zip(self.maps, self.classes, self.labels)]

    def write_npz(self, folder: Path) -> Path:
        folder.mkdir(parents=True)
        for i, image_id in enumerate(self.ids):
            np.savez(folder / f"{image_id}.npz", classes=self.classes[i], maps=self.maps[i], scores=self.scores[i])
        return folder

    def write_npy(self, folder: Path) -> Path:
        folder.mkdir(parents=True)
        for image_id, m in zip(self.ids, self.gt_maps()):
            np.save(folder / f"{image_id}.npy", m)
        return folder


def batches(n: int, size: int):
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


def as_json(value):
    return json.loads(json.dumps(value))


def summary_part(summary: dict, computed: dict) -> dict:
    """The summary.json values of the keys the metric computes (the rest is the run's identity)."""
    return {k: summary[k] for k in computed}


@pytest.fixture(scope="module")
def data(tiny_val: Path) -> Path:
    return tiny_val


# ------------------------------------------------------------------------------------ CLI equality


@pytest.mark.parametrize("shape", ["grid", "odd", "original"])
def test_localization_error_equals_bench_score_on_ranked_maps(data: Path, tmp_path: Path, shape: str) -> None:
    items = Items(data, shape, seed=11)
    out = tmp_path / "results"
    assert main(["score", str(items.write_npz(tmp_path / "maps")), "--data", str(data), "--suite", "ilsvrc_loc", "--out", str(out), *QUIET]) == 0
    run = RunDir(out / "ilsvrc_loc" / "maps-maps")
    metric = LocalizationError("ilsvrc_loc", class_ids=items.valset.class_ids)
    for sl in batches(len(items.ids), 5):
        maps = items.maps[sl] if shape == "original" else torch.from_numpy(np.stack(items.maps[sl]))
        metric.update(maps, items.labels[sl], items.boxes[sl], items.sizes[sl], classes=np.stack(items.classes[sl]),
                      scores=np.stack(items.scores[sl]), image_ids=items.ids[sl])  # fmt: skip
    pd.testing.assert_frame_equal(metric.records, run.read_records())
    computed = metric.compute()
    assert as_json(computed) == summary_part(run.read_summary(), computed)
    assert computed["scored"] == len(items.ids) and computed["top1_loc_err"] is not None


@pytest.mark.parametrize("shape", ["grid", "224", "odd"])
def test_gt_class_maps_equal_a_wsol_suite_score_and_bench_sweep(data: Path, tmp_path: Path, shape: str) -> None:
    """`bench score --suite wsol_ilsvrc` on .npy maps: records, summary and wsolevaluation's sweep
    (step 0.001); then `bench sweep` (the harness's rules, at 224 and at the original size)."""
    items = Items(data, shape, seed=5)
    out = tmp_path / "results"
    assert main(["score", str(items.write_npy(tmp_path / "maps")), "--data", str(data), "--suite", "wsol_ilsvrc", "--out", str(out), *QUIET]) == 0
    run = RunDir(out / "wsol_ilsvrc" / "maps-maps")
    gt_maps = items.gt_maps()
    # a tensor for equal shapes, a list of arrays otherwise; float16 and float64 inputs are cast to float32 as the CLI does
    maps = torch.from_numpy(np.stack(gt_maps)) if shape != "odd" else [m.astype(np.float64) for m in gt_maps]
    loc = LocalizationError("wsol_ilsvrc", class_ids=items.valset.class_ids)
    loc.update(maps, items.labels, items.boxes, items.sizes, image_ids=items.ids)
    pd.testing.assert_frame_equal(loc.records, run.read_records())
    computed = loc.compute()
    assert as_json(computed) == summary_part(run.read_summary(), computed)
    assert computed["top1_loc_err"] is None and computed["gt_known_loc_err"] is not None

    sweep = json.loads((run.path / "sweep.json").read_text())
    v2, v1 = MaxBoxAccV2(step=0.001), MaxBoxAcc(step=0.001)
    for sl in batches(len(gt_maps), 7):
        for metric in (v1, v2):
            metric.update(maps[sl], items.boxes[sl], items.sizes[sl])
    assert as_json(v2.compute()) == as_json(v1.compute()) == {k: sweep[k] for k in SWEEP_KEYS}
    curves = pd.read_csv(run.path / "sweep_curves.csv")
    pd.testing.assert_frame_equal(pd.read_csv(__import__("io").StringIO(v2.curves.to_csv(index=False))), curves)

    for at in ("224", "original"):
        assert main(["sweep", str(run.path), "--step", "0.01", "--at", at, *QUIET]) == 0
        harness = json.loads((run.path / "sweep.json").read_text())
        mine = box_accuracy(maps, items.boxes, items.sizes, step=0.01, rules="harness", at=at)
        assert as_json(mine) == {k: harness[k] for k in SWEEP_KEYS}


def test_pxap_equals_the_wsol_mask_evaluator_on_mask_files(tmp_path: Path) -> None:
    """PxAP of masks held in memory == wsol.MaskAccumulator reading the same masks from PNG files
    (the wsol_openimages sweep's per-image code), maps of several sizes, with and without ignore."""
    from bench.core import wsol

    rng = np.random.default_rng(3)
    reference = wsol.MaskAccumulator(wsol.wsol_thresholds(0.001))
    metric = PxAP(step=0.001)
    maps, masks, ignores = [], [], []
    for i, (size, shape) in enumerate([((300, 200), (7, 7)), ((224, 224), (224, 224)), ((161, 97), (13, 19)), ((50, 80), (50, 80))]):
        w, h = size
        cam = blobs(rng, 1, shape)[0]
        inst = []
        for k in range(1 + i % 2):
            m = np.zeros((h, w), dtype=np.uint8)
            y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[y0 : y0 + h // 3, x0 : x0 + w // 3] = 255
            Image.fromarray(m).save(tmp_path / f"{i}_{k}.png")
            inst.append(m)
        ign = None
        if i % 2 == 0:
            ign = np.zeros((h, w), dtype=np.uint8)
            ign[: h // 4, : w // 4] = 255
            Image.fromarray(ign).save(tmp_path / f"{i}_ignore.png")
        reference.add_cam(cam, [tmp_path / f"{i}_{k}.png" for k in range(len(inst))], None if ign is None else tmp_path / f"{i}_ignore.png")
        maps.append(torch.from_numpy(cam))
        masks.append(np.stack(inst) if len(inst) > 1 else inst[0])
        ignores.append(ign)
    metric.update(maps[:2], masks[:2], ignores[:2])
    metric.update(maps[2:], masks[2:], ignores[2:])
    assert metric.compute() == {"pxap": reference.pxap(), "pxap_images": 4}


# ------------------------------------------------------------------------------------ hand-computed


def test_pxap_hand_computed_in_memory() -> None:
    """tests/test_wsol.py's two-image case, from arrays: AP over the ranked pixels."""
    z = np.zeros((224, 224))
    a1 = z.copy(); a1[0:10, 0:10] = 255  # fmt: skip
    a2 = z.copy(); a2[100:110, 100:105] = 255  # fmt: skip
    ign = z.copy(); ign[0:20, 0:20] = 255  # fmt: skip
    b1 = z.copy(); b1[50:60, 50:60] = 255  # fmt: skip
    cam_a = np.zeros((224, 224), dtype=np.float32)
    cam_a[0:20, 0:20] = 1.0
    cam_b = np.zeros((224, 224), dtype=np.float32)
    cam_b[50:60, 50:60] = 0.5
    cam_b[0, 0] = 1.0
    metric = PxAP(step=0.25)
    metric.update(np.stack([cam_a, cam_b]), [[a1, a2], b1], [ign, None])
    p1, r1 = 100 / 101, 100 / 250
    p2, r2 = 200 / 201, 200 / 250
    n_bg = 2 * 224 * 224 - 450 - 101
    p3, r3 = 250 / (250 + n_bg + 1), 1.0
    assert metric.compute()["pxap"] == pytest.approx(100 * (p1 * r1 + p2 * (r2 - r1) + p3 * (r3 - r2)), rel=1e-12)


def test_boxacc_hand_computed_at_224() -> None:
    """224 x 224 maps need no resize. Image 1: a 0/1 square at x, y in [50, 99] (a 50 px side) and GT
    [50, 50, 99, 99]: wsolevaluation's box is one pixel larger right and bottom ([50, 50, 100, 100]):
    IoU 2500/2601 >= 0.7 at every tau where the square is foreground (int(tau * 255) < 255). Image 2:
    the same map, GT in the other corner: IoU 0. So BoxAcc is 50 at every delta, tau; the harness
    (inclusive boxes) gives the same here."""
    cam = np.zeros((224, 224), dtype=np.float32)
    cam[50:100, 50:100] = 1.0
    boxes = [[[50, 50, 99, 99]], [[150, 150, 223, 223]]]
    for rules in ("wsol", "harness"):
        metric = MaxBoxAccV2(step=0.1, rules=rules)
        metric.update(np.stack([cam, cam]), boxes, [[224, 224], [224, 224]])
        result = metric.compute()
        assert result["maxboxacc"] == 50.0 and result["maxboxacc_v2_per_delta"] == {30: 50.0, 50: 50.0, 70: 50.0}
        assert result["best_tau"] == 0.0 and result["images"] == 2
        assert (metric.curves.drop(columns="tau").to_numpy() == 50.0).all()


def test_localization_error_hand_computed_errors() -> None:
    """Three 224 x 224 images, GT class 2, GT box the centre square. A: class 2 first, its map on the
    box (top-1 hit). B: class 2 third (top-5 hit only; top-1 class wrong). C: class 2 first but its map
    in a corner (classification right, localization wrong; GT-known wrong too)."""
    on = np.zeros((224, 224), dtype=np.float32)
    on[80:144, 80:144] = 1.0
    off = np.zeros((224, 224), dtype=np.float32)
    off[0:30, 0:30] = 1.0
    classes = np.array([[2, 0, 1, 3, 4], [0, 1, 2, 3, 4], [2, 0, 1, 3, 4]])
    maps = np.stack([np.stack([on] * 5), np.stack([on] * 5), np.stack([off] * 5)])
    metric = LocalizationError("ilsvrc_loc")
    metric.update(maps, [2, 2, 2], [[[80, 80, 143, 143]]] * 3, [[224, 224]] * 3, classes=classes)
    s = metric.compute()
    assert s["top1_cls_err"] == pytest.approx(100 / 3) and s["top5_cls_err"] == 0.0
    assert s["top1_loc_err"] == pytest.approx(200 / 3) and s["top5_loc_err"] == pytest.approx(100 / 3)
    assert s["gt_known_loc_err"] == pytest.approx(100 / 3) and s["iou_ge_0.5"] == pytest.approx(200 / 3)
    assert s["mean_iou"] == pytest.approx(2 / 3)
    assert metric.records["gtk_box"].tolist() == ["80 80 143 143", "80 80 143 143", "0 0 29 29"]


def test_update_records_of_failed_images_count_as_failed() -> None:
    from bench.core.scoring import failed_record

    class GT:
        image_id, label = "x", 1

    metric = LocalizationError("ilsvrc_loc")
    metric.update_records([failed_record(GT, False, "map missing")])
    s = metric.compute()
    assert (s["images"], s["scored"], s["failed"], s["loc_images"]) == (1, 0, 1, 0)


# ------------------------------------------------------------------------------------ properties


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 5), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_batches_and_order_do_not_change_the_box_sweep(cuts: list[int], seed: int) -> None:
    """Any split into update() calls, and any image order, gives the same counts (harness rules:
    sweep_map per map, so whole batches equal per-map accumulation)."""
    from bench.core.sweep import SweepAccumulator, scale_boxes, sweep_thresholds
    from bench.core.cam import upsample_cam

    rng = np.random.default_rng(seed)
    n = sum(cuts)
    maps = [blobs(rng, 1, (int(rng.integers(3, 12)), int(rng.integers(3, 12))))[0] for _ in range(n)]
    sizes = [(int(rng.integers(20, 300)), int(rng.integers(20, 300))) for _ in range(n)]
    boxes = []
    for w, h in sizes:
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        boxes.append(np.array([[x0, y0, int(rng.integers(x0, w)), int(rng.integers(y0, h))]]))
    metric = MaxBoxAccV2(step=0.05, rules="harness")
    start = 0
    for c in cuts:
        metric.update(maps[start : start + c], boxes[start : start + c], sizes[start : start + c])
        start += c
    perm = rng.permutation(n)
    other = MaxBoxAccV2(step=0.05, rules="harness")
    other.update([maps[i] for i in perm], [boxes[i] for i in perm], [sizes[i] for i in perm])
    reference = SweepAccumulator(thresholds=sweep_thresholds(0.05))
    for m, b, (w, h) in zip(maps, boxes, sizes):  # the CLI's per-map path (bench.run.sweeps.sweep_counts)
        up = upsample_cam(torch.from_numpy(m[None]), (224, 224))[0].numpy()
        reference.add(up, scale_boxes(b, (w, h), (224, 224)))
    expected = {k: v for k, v in reference.results().items() if k in SWEEP_KEYS}
    assert metric.compute() == other.compute() == expected


@pytest.fixture(scope="module")
def grid_items(data: Path) -> Items:
    return Items(data, "grid", seed=41)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(1, 18))
def test_any_order_and_batching_with_indices_give_the_same_records_and_summary(grid_items: Items, seed: int, size: int) -> None:
    """Images fed in any order, in batches of any size, with their dataset indices: the records come
    back in dataset order and the summary is the in-order one, bit for bit."""
    items = grid_items
    maps, classes = torch.from_numpy(np.stack(items.maps)), np.stack(items.classes)
    reference = LocalizationError("ilsvrc_loc")
    reference.update(maps, items.labels, items.boxes, items.sizes, classes=classes, image_ids=items.ids)
    order = np.random.default_rng(seed).permutation(len(items.ids))
    shuffled = LocalizationError("ilsvrc_loc")
    for sl in batches(len(order), size):
        idx = order[sl]
        shuffled.update(maps[idx], [items.labels[i] for i in idx], [items.boxes[i] for i in idx], [items.sizes[i] for i in idx],
                        classes=classes[idx], image_ids=[items.ids[i] for i in idx], indices=idx)  # fmt: skip
    assert shuffled.compute() == reference.compute()
    pd.testing.assert_frame_equal(shuffled.records, reference.records)


# ------------------------------------------------------------------------------------ two processes


def test_two_processes_equal_one(data: Path, tmp_path: Path) -> None:
    items = Items(data, "grid", seed=23)
    payload = {
        "ids": np.array(items.ids, dtype=object), "labels": np.array(items.labels), "boxes": np.array(items.boxes, dtype=object),
        "sizes": np.array(items.sizes), "classes": np.stack(items.classes), "maps": np.stack(items.maps),
        "class_ids": items.valset.class_ids,
    }  # fmt: skip
    out = tmp_path / "ddp.pkl"
    from tests.ddp_worker import ddp_worker

    torch.multiprocessing.spawn(ddp_worker, args=(2, f"file://{tmp_path / 'init'}", pickle.dumps(payload), str(out)), nprocs=2, join=True)
    got = pickle.loads(out.read_bytes())

    loc = LocalizationError("ilsvrc_loc", class_ids=items.valset.class_ids)
    loc.update(payload["maps"], payload["labels"], list(payload["boxes"]), payload["sizes"], classes=payload["classes"], image_ids=items.ids)
    gt = items.gt_maps()
    box, box_h = MaxBoxAccV2(step=0.01), MaxBoxAcc(step=0.01, rules="harness")
    for metric in (box, box_h):
        metric.update(gt, items.boxes, items.sizes)
    lonely = LocalizationError("ilsvrc_loc")
    lonely.update(payload["maps"][:3], payload["labels"][:3], list(payload["boxes"][:3]), payload["sizes"][:3], classes=payload["classes"][:3])
    assert got["loc"] == loc.compute()
    assert got["box"] == box.compute() and got["box_h"] == box_h.compute()
    assert got["lonely"] == lonely.compute()
    pd.testing.assert_frame_equal(got["records"], loc.records)


# ------------------------------------------------------------------------------------ API surface


def test_for_suite_and_bad_input_errors() -> None:
    assert set(for_suite("ilsvrc_loc")) == {"localization"}
    metrics = for_suite("wsol_openimages")
    assert isinstance(metrics["boxacc"], MaxBoxAccV2) and metrics["boxacc"].step == 0.001 and isinstance(metrics["pxap"], PxAP)
    metric = MaxBoxAccV2(step=0.1)
    with pytest.raises(MetricInputError, match="box arrays for 2 maps"):
        metric.update(np.zeros((2, 7, 7)), [[[0, 0, 1, 1]]], [[10, 10], [10, 10]])
    with pytest.raises(MetricInputError, match=r"sizes must be \(N=2, 2\)"):
        metric.update(np.zeros((2, 7, 7)), [[[0, 0, 1, 1]]] * 2, [10, 10])
    with pytest.raises(MetricInputError, match="x2 < x1"):
        metric.update(np.zeros((1, 7, 7)), [[[5, 0, 1, 1]]], [[10, 10]])
    with pytest.raises(MetricInputError, match="rules must be"):
        MaxBoxAcc(rules="paper")
    loc = LocalizationError("ilsvrc_loc")
    with pytest.raises(MetricInputError, match="needs at least 5"):
        loc.update(np.zeros((1, 3, 7, 7)), [0], [[[0, 0, 1, 1]]], [[10, 10]], classes=[[0, 1, 2]])
    with pytest.raises(MetricInputError, match="image x: no map for class 9"):
        loc.update(np.ones((1, 5, 7, 7)), [9], [[[0, 0, 1, 1]]], [[10, 10]], classes=[[0, 1, 2, 3, 4]], image_ids=["x"])
    with pytest.raises(MetricInputError, match=r"maps\[0\] has 1 non-finite values"):
        bad = np.ones((1, 7, 7), dtype=np.float32)
        bad[0, 3, 3] = np.nan
        loc.update(bad, [0], [[[0, 0, 1, 1]]], [[10, 10]])
    loc.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):  # torchmetrics says so; the summary is of no image
        assert loc.compute()["images"] == 0 and len(loc.records) == 0


@pytest.mark.parametrize("module", ["bench.metrics.boxacc", "bench.metrics.pxap", "bench.metrics.localization", "bench.metrics.suites"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_forward_returns_the_batch_and_accumulates_like_update(data: Path) -> None:
    """metric(batch) (torchmetrics' forward) gives the batch's numbers and leaves the same global
    state as update(): records, summary and sweep equal an update()-only object's."""
    items = Items(data, "grid", seed=31)
    maps, classes = torch.from_numpy(np.stack(items.maps)), np.stack(items.classes)
    fwd, upd = LocalizationError("ilsvrc_loc"), LocalizationError("ilsvrc_loc")
    box_fwd, box_upd = MaxBoxAccV2(step=0.05), MaxBoxAccV2(step=0.05)
    gt = torch.from_numpy(np.stack(items.gt_maps()))
    for sl in batches(len(items.ids), 6):
        args = (maps[sl], items.labels[sl], items.boxes[sl], items.sizes[sl])
        batch = fwd(*args, classes=classes[sl])
        alone = LocalizationError("ilsvrc_loc")
        alone.update(*args, classes=classes[sl])
        assert batch == alone.compute()
        upd.update(*args, classes=classes[sl])
        assert box_fwd(gt[sl], items.boxes[sl], items.sizes[sl]) == box_accuracy(gt[sl], items.boxes[sl], items.sizes[sl], step=0.05)
        box_upd.update(gt[sl], items.boxes[sl], items.sizes[sl])
    assert fwd.compute() == upd.compute() and box_fwd.compute() == box_upd.compute()
    pd.testing.assert_frame_equal(fwd.records, upd.records)
