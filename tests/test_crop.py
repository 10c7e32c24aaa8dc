"""The crop protocol (suites ilsvrc_loc_crop / cub_loc_crop, bench.core.crop) against hand-computed values
and against an independent implementation written here from the protocol's steps (OpenCV's INTER_LINEAR
resize, skimage's ``label`` + the most frequent non-zero label, ``regionprops``' box, the +1 IoU with
plain Python floats, per-class grouping with dicts), image for image."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.core.crop import (
    class_averaged,
    crop_hit,
    crop_iou,
    crop_map_box,
    mean_softmax,
    ten_crop_views,
    to_crop,
)
from bench.core.protocol import ProtocolError, load_protocol, protocol_from_dict
from bench.core.records import parse_boxes, parse_floats, parse_ints
from bench.data.crop_views import CropViews
from bench.data.fixtures import write_ilsvrc_layout
from bench.data.open import open_dataset
from bench.run.results import RunDir

cv2 = pytest.importorskip("cv2")
measure = pytest.importorskip("skimage.measure")

QUIET = ["--no-progress"]


# ------------------------------------------------------------------ the independent implementation
def ref_gt_boxes(boxes, width: int, height: int, resize: int = 256, crop: int = 224) -> list[list[float]]:
    """GT boxes into crop pixels, coordinate by coordinate with Python floats (the steps, not the code)."""
    off = int(round((resize - crop) / 2.0))
    out = []
    for x0, y0, x1, y1 in np.asarray(boxes).tolist():
        rw, rh = resize / width, resize / height
        c = [max(off, x0 * rw), max(off, y0 * rh), min(off + crop, x1 * rw), min(off + crop, y1 * rh)]
        out.append([((v - off) / crop) * crop for v in c])
    return out


def ref_box(cam: np.ndarray, tau: float, crop: int = 224) -> list[int]:
    """Min-max, cv2 INTER_LINEAR to crop x crop, > tau, skimage label, most frequent label, regionprops."""
    m = np.asarray(cam, dtype=np.float32)
    lo, hi = m.min(), m.max()
    if hi == lo:
        return [0, 0, crop, crop]
    norm = cv2.resize((m - lo) / (hi - lo), (crop, crop), interpolation=cv2.INTER_LINEAR)
    labels = measure.label(norm > tau, connectivity=2)
    counts = Counter(int(v) for v in labels.ravel() if v != 0)
    if not counts:
        return [0, 0, crop, crop]
    best = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))[0]  # most pixels; ties: smallest label
    props = measure.regionprops((labels == best).astype(int))
    r0, c0, r1, c1 = props[0].bbox
    return [c0, r0, c1, r1]


def ref_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    if inter == 0:
        return 0.0
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def ref_class_mean(per_image: dict[int, list[bool]]) -> float:
    return 100.0 * sum(sum(v) / len(v) for v in per_image.values()) / len(per_image)


# ------------------------------------------------------------------ hand-computed values
def test_to_crop_boxes_by_hand() -> None:
    # 500 x 375 image: x scaled by 256/500 = 0.512, y by 256/375; crop offset 16
    got = to_crop(boxes=[[111, 108, 441, 193]], image_size=(375, 500)).boxes[0]
    assert got == pytest.approx([111 * 0.512 - 16, 108 * 256 / 375 - 16, 441 * 0.512 - 16, 193 * 256 / 375 - 16], abs=1e-9)
    assert got[0] == pytest.approx(40.832, abs=1e-9)
    # the whole image: cut to the crop window exactly
    assert to_crop(boxes=[[0, 0, 499, 374]], image_size=(375, 500)).boxes[0].tolist() == [0.0, 0.0, 224.0, 224.0]
    # partly outside (left edge): the corner moves to the crop's edge, the far side stays
    part = to_crop(boxes=[[0, 100, 250, 200]], image_size=(375, 500)).boxes[0]
    assert part[0] == 0.0 and part[2] == pytest.approx(250 * 0.512 - 16, abs=1e-9)
    # wholly outside (in the 16-pixel margin): an inverted box that overlaps nothing
    out = to_crop(boxes=[[0, 0, 10, 10]], image_size=(375, 500)).boxes[0]
    assert out[0] > out[2] and out[1] > out[3]
    assert crop_iou([0, 0, 224, 224], [out]).tolist() == [0.0]


def test_crop_iou_and_strict_hit_by_hand() -> None:
    # box (0,0,10,10) counts 11 x 11 under the +1 formula; GT (0,0,9,9) 10 x 10 inside it
    assert crop_iou([0, 0, 10, 10], [[0, 0, 9, 9]])[0] == pytest.approx(100 / 121, abs=1e-15)
    # IoU exactly 0.5: 5 / (10 + 5 - 5); a hit needs > 0.5
    iou = crop_iou([0, 0, 9, 0], [[0, 0, 4, 0]])[0]
    assert iou == 0.5 and not crop_hit(iou) and crop_hit(np.nextafter(0.5, 1))
    # best over several GT boxes
    assert crop_iou([0, 0, 9, 9], [[50, 50, 60, 60], [0, 0, 9, 9]]).tolist() == [0.0, 1.0]


def test_map_box_component_rules() -> None:
    m = np.zeros((224, 224), np.float32)
    m[10:20, 100:110] = 1.0  # 100 px, first in raster order
    m[50:60, 0:10] = 1.0  # 100 px, a tie: the first one wins
    box, empty = crop_map_box(m, 0.5)
    assert box.tolist() == [100, 10, 110, 20] and not empty  # exclusive end
    m[200:224, 200:224] = 0.9  # 576 px touching the right/bottom border: the largest now
    assert crop_map_box(m, 0.5)[0].tolist() == [200, 200, 224, 224]
    # 8-connectivity: two diagonal pixels are one component
    d = np.zeros((224, 224), np.float32)
    d[5, 5] = d[6, 6] = 1.0
    d[100, 100] = d[100, 102] = d[100, 104] = 1.0  # three isolated pixels
    assert crop_map_box(d, 0.5)[0].tolist() == [5, 5, 7, 7]
    # constant map (0/0) and a map with nothing above tau: the whole crop
    assert crop_map_box(np.full((7, 7), 3.0), 0.5) [0].tolist() == [0, 0, 224, 224]
    assert crop_map_box(np.full((7, 7), 3.0), 0.5)[1]


@pytest.mark.parametrize("seed", range(6))
def test_map_box_equals_the_reference_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        side = int(rng.choice([7, 14, 28]))
        cam = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), side / 8)
        tau = float(rng.choice([0.15, 0.3, 0.45, 0.5, rng.random()]))
        assert crop_map_box(cam, tau)[0].tolist() == ref_box(cam, tau)


def test_bilinear_resize_matches_opencv_upsampling() -> None:
    """The map resize (torch, align_corners=False) against cv2.INTER_LINEAR: both interpolate two
    float32 products per axis, so they agree within a few float32 ulps of values in [0, 1]."""
    from bench.core.crop import crop_map

    rng = np.random.default_rng(3)
    for side in (7, 14, 28, 112):
        cam = rng.random((side, side)).astype(np.float32)
        ours = crop_map(cam)
        norm = (cam - cam.min()) / (cam.max() - cam.min())
        theirs = cv2.resize(norm, (224, 224), interpolation=cv2.INTER_LINEAR)
        assert np.abs(ours - theirs).max() <= 8 * np.finfo(np.float32).eps


def test_class_averaged_by_hand() -> None:
    by_class = {
        "a": {"top1_loc_err": 50.0, "top5_loc_err": 0.0, "gt_known_loc_err": 0.0, "top1_cls_err": 50.0, "top5_cls_err": 0.0, "loc_images": 2, "scored": 2},
        "b": {"top1_loc_err": 0.0, "top5_loc_err": 0.0, "gt_known_loc_err": 100.0, "top1_cls_err": 0.0, "top5_cls_err": 0.0, "loc_images": 1, "scored": 1},
        "c": {"top1_loc_err": None, "top5_loc_err": None, "gt_known_loc_err": None, "top1_cls_err": None, "top5_cls_err": None, "loc_images": 0, "scored": 0},
    }
    got = class_averaged(by_class)
    assert got["top1_loc_acc"] == 75.0 and got["top1_loc_err"] == 25.0  # (50 + 100) / 2, not 2/3 of images
    assert got["gt_known_loc_acc"] == 50.0 and got["classes"] == 2


def test_ten_crops_and_mean_softmax_match_torchvision() -> None:
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (181, 263, 3), dtype=np.uint8)
    pil = Image.fromarray(rgb)
    resized = T.Resize((256, 256))(pil)
    ref = np.stack([np.asarray(c) for c in T.TenCrop(224)(resized)])
    assert np.array_equal(ten_crop_views(np.asarray(resized), 224), ref)
    # the localized view: Resize((256, 256)) + CenterCrop(224) + ToTensor + Normalize
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    views = CropViews(256, 224, "tencrop", mean, std)(rgb)
    want = T.Compose([T.Resize((256, 256)), T.CenterCrop(224), T.ToTensor(), T.Normalize(mean, std)])(pil)
    assert views.shape == (11, 3, 224, 224)
    assert torch.allclose(views[0], want, atol=1e-6, rtol=0)
    assert CropViews(256, 224, "resize", mean, std)(rgb).shape == (2, 3, 224, 224)
    assert CropViews(256, 224, "crop", mean, std)(rgb).shape == (1, 3, 224, 224)
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # two views of one image
    p = mean_softmax(logits, 2)[0]
    e = np.e
    assert p.tolist() == pytest.approx([(1 / (1 + e) + e**2 / (e**2 + 1)) / 2, (e / (1 + e) + 1 / (e**2 + 1)) / 2], abs=1e-7)


# ------------------------------------------------------------------ protocol
def test_crop_suites_and_keys() -> None:
    p = load_protocol("ilsvrc_loc_crop")
    assert (p.pipeline, p.box_rule, p.strict_iou, p.crop_resize, p.crop_size, p.classify) == ("crop", "crop_largest_cc", True, 256, 224, "tencrop")
    assert p.threshold_for("vgg16_gap")[0] == 0.5 and p.threshold_for("resnet50")[0] == 0.45
    assert p.threshold_for("inception_v3")[0] == 0.3 and p.threshold_for("efficientnet_lite0")[0] == 0.5
    cub = load_protocol("cub_loc_crop")
    assert cub.threshold_for("vgg16")[0] == 0.15 and cub.threshold_for("googlenet_gap")[0] == 0.1
    q = p.with_threshold(0.3)
    assert q.thresholds == (0.3,) and q.hash != p.hash and q.box_thresholds == p.box_thresholds
    assert protocol_from_dict(p.resolved()).hash == p.hash
    # keys of other suites are unchanged: no crop or strict key in their resolved form
    for path in sorted((Path(__file__).parents[1] / "protocols").glob("*.toml")):  # this checkout's suites
        r = load_protocol(path).resolved()
        if "crop" not in path.stem:
            assert "resize" not in r["input"] and "strict" not in r["scoring"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"boxes": {"rule": "largest_cc"}}, "go together"),
        ({"input": {"pipeline": "resize", "classify": "tencrop"}}, "go together"),
        ({"input": {"pipeline": "crop", "crop": 300}}, "0 < crop <= resize"),
        ({"input": {"pipeline": "crop", "classify": "five"}}, "input.classify"),
        ({"cam": {"upsample": "bicubic"}}, "cam.upsample"),
        ({"suite": {"box_thresholds": {"vgg": 1.5}}}, "suite.box_thresholds.vgg"),
        ({"scoring": {"iou_threshold": 0.5, "strict": 1}}, "scoring.strict"),
    ],
)
def test_crop_keys_are_validated(change: dict, message: str) -> None:
    raw = load_protocol("ilsvrc_loc_crop").resolved()
    for table, keys in change.items():
        raw.setdefault(table, {}).update(keys)
    with pytest.raises(ProtocolError, match=message):
        protocol_from_dict(raw, "x.toml")
    plain = load_protocol("ilsvrc_loc").resolved()
    plain["input"]["classify"] = "resize"
    with pytest.raises(ProtocolError, match="only with input.pipeline = 'crop'"):
        protocol_from_dict(plain, "x.toml")


# ------------------------------------------------------------------ saved maps through `bench score`
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]


@pytest.fixture(scope="module")
def crop_case(tmp_path_factory: pytest.TempPathFactory):
    """Images of 4 classes (3, 1, 2, 2 images: class 1 has a single image), boxes partly outside the crop,
    one image with two boxes, and maps per image: GT map at 7, 14 or 224 px, one whose largest component
    touches the crop border, ranked classes with and without the GT class in the top 1 / top 5."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("crop_case")
    labels = [0, 0, 0, 1, 2, 2, 3, 3]
    samples = []
    for i, lab in enumerate(labels):
        h, w = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        boxes = [[x0, y0, int(rng.integers(x0 + 10, w)), int(rng.integers(y0 + 10, h))]]
        if i == 0:
            boxes = [[0, 0, w - 1, h // 3]]  # partly outside the crop (top and both sides)
        if i == 4:
            boxes.append([0, h // 2, w // 4, h - 1])  # a second box, left-bottom, partly outside
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        samples.append((f"CROP_val_{i:08d}", img, WNIDS[lab], np.array(boxes, dtype=np.int64)))
    data = write_ilsvrc_layout(root / "data", samples, ("voc",), image_ext=".png", wnids=WNIDS)["voc"]
    maps_dir = root / "maps"
    maps_dir.mkdir()
    maps = {}
    for i, lab in enumerate(labels):
        side = 14 if i == 2 else [7, 14, 224][i % 3]
        cam = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), max(side / 8, 1.0))
        if i == 2:
            cam = np.zeros((14, 14), np.float32)
            cam[9:, 10:] = 1.0  # largest component on the crop's bottom-right border
            cam[1, 1] = 0.8
        others = [c for c in range(len(WNIDS)) if c != lab]
        rng.shuffle(others)
        order = {0: [lab, *others[:4]], 1: [others[0], lab, *others[1:4]]}.get(i % 3, others[:5])  # top-1, top-5, missed
        if i == 3:
            order = [lab, *others[:4]]
        stack = np.stack([cam if c == lab else rng.random((side, side)).astype(np.float32) for c in order] + ([cam] if lab not in order else []))
        classes = order + ([lab] if lab not in order else [])
        np.savez(maps_dir / f"CROP_val_{i:08d}.npz", classes=np.array(classes), maps=stack)
        maps[f"CROP_val_{i:08d}"] = (cam, order)
    return data, maps_dir, maps, labels


@pytest.mark.parametrize("tau", [0.5, 0.2])
def test_score_equals_the_reference_image_for_image(crop_case, tmp_path: Path, tau: float) -> None:
    data, maps_dir, maps, labels = crop_case
    out = tmp_path / "res"
    assert main(["score", str(maps_dir), "--data", str(data), "--suite", "ilsvrc_loc_crop", "--out", str(out), "--box-threshold", str(tau), *QUIET]) == 0
    run = RunDir(out / "ilsvrc_loc_crop" / f"maps-{maps_dir.name}")
    records = run.read_records().set_index("image_id")
    valset = open_dataset(data)
    top1, top5, gtk = defaultdict(list), defaultdict(list), defaultdict(list)
    seen = {"partial": 0, "border": 0}
    for g in valset.images:
        rec = records.loc[g.image_id]
        cam, order = maps[g.image_id]
        h, w = int(rec["height"]), int(rec["width"])
        gt = ref_gt_boxes(g.boxes, w, h)
        assert parse_floats(rec["crop_gt_boxes"].replace(";", " ")).tolist() == pytest.approx(np.ravel(gt).tolist(), abs=5e-7)
        box = ref_box(cam, tau)
        assert parse_ints(rec["gtk_box"]).tolist() == box
        iou = max(ref_iou(box, b) for b in gt)
        assert float(rec["gtk_iou"]) == pytest.approx(iou, abs=1e-10)
        hit = iou > 0.5
        assert int(rec["gtk_hit"]) == hit
        assert parse_ints(rec["guess_hits"]).tolist() == [int(c == g.label and hit) for c in order]
        top1[g.label].append(order[0] == g.label and hit)
        top5[g.label].append(g.label in order[:5] and hit)
        gtk[g.label].append(hit)
        seen["partial"] += any(x0 * 256 / w < 16 or y0 * 256 / h < 16 or x1 * 256 / w > 240 or y1 * 256 / h > 240 for x0, y0, x1, y1 in g.boxes.tolist())
        seen["border"] += box[2] == 224 or box[3] == 224 or box[0] == 0 or box[1] == 0
    assert seen["partial"] >= 2 and seen["border"] >= 1 and Counter(labels)[1] == 1
    crop = json.loads(run.summary_path.read_text())["crop"]
    assert crop["top1_loc_acc"] == pytest.approx(ref_class_mean(top1), abs=1e-9)
    assert crop["top5_loc_acc"] == pytest.approx(ref_class_mean(top5), abs=1e-9)
    assert crop["gt_known_loc_acc"] == pytest.approx(ref_class_mean(gtk), abs=1e-9)
    assert crop["box_threshold"] == tau and crop["classes"] == 4


def test_per_class_mean_differs_from_the_image_mean(crop_case, tmp_path: Path) -> None:
    """With unequal class sizes the two means differ; the summary keeps the image mean in its usual keys."""
    data, maps_dir, _maps, _labels = crop_case
    out = tmp_path / "res"
    assert main(["score", str(maps_dir), "--data", str(data), "--suite", "ilsvrc_loc_crop", "--out", str(out), "--box-threshold", "0.2", *QUIET]) == 0
    summary = json.loads((out / "ilsvrc_loc_crop" / f"maps-{maps_dir.name}" / "summary.json").read_text())
    frame = RunDir(out / "ilsvrc_loc_crop" / f"maps-{maps_dir.name}").read_records()
    assert summary["gt_known_loc_err"] == pytest.approx(100 * (1 - frame["gtk_hit"].mean()), abs=1e-9)
    assert set(summary["by_class"]) == {WNIDS[c] for c in range(4)}


# ------------------------------------------------------------------ bench run: the engine's crop views
@pytest.fixture(scope="module")
def photo_crop_run(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("efficientnet_lite_pytorch")
    from bench.data.photos import write_real_photo_val

    root = tmp_path_factory.mktemp("photo_crop")
    data = write_real_photo_val(root / "photos")
    out = root / "results"
    assert main(["run", "--suite", "ilsvrc_loc_crop", "--model", "efficientnet_lite0", "--data", str(data), "--out", str(out),
                 "--save-cams", "--workers", "0", "--batch-size", "4", *QUIET]) == 0  # fmt: skip
    return data, RunDir(out / "ilsvrc_loc_crop" / "efficientnet_lite0")


def test_run_equals_the_reference_on_real_photos(photo_crop_run) -> None:
    """Records of `bench run` against the reference steps: classes from torchvision's own Resize + TenCrop
    pipeline through the model, boxes and IoUs from the run's cached GT-class maps."""
    from PIL import Image
    from torchvision import transforms as T

    from bench.models.registry import build_model
    from bench.run.cam_cache import read_cam_shard

    data, run = photo_crop_run
    manifest = json.loads(run.manifest_path.read_text())
    assert manifest["protocol"]["guesses"]["threshold"] == 0.5  # lite0: the suite's default
    model = build_model("efficientnet_lite0")[0].eval()
    norm = T.Normalize(model.spec.mean, model.spec.std)
    tencrop = T.Compose([T.Resize((256, 256)), T.TenCrop(224), T.Lambda(lambda cs: torch.stack([norm(T.ToTensor()(c)) for c in cs]))])
    records = run.read_records().set_index("image_id")
    cache = read_cam_shard(run, 0)
    valset = open_dataset(data)
    for index, g in enumerate(valset.images):
        rec = records.loc[g.image_id]
        with Image.open(g.path) as im:
            pil = im.convert("RGB")
        with torch.no_grad():
            probs = model(tencrop(pil))[0].float().softmax(1).mean(0)
        top5 = probs.topk(5).indices.tolist()
        assert parse_ints(rec["top5_classes"]).tolist() == top5
        row = int(np.flatnonzero(cache["index"] == index)[0])
        classes = cache["classes"][row].tolist()
        cam = cache["cams"][row][classes.index(g.label)]
        box = ref_box(cam, 0.5)
        assert parse_ints(rec["gtk_box"]).tolist() == box
        iou = max(ref_iou(box, b) for b in ref_gt_boxes(g.boxes, pil.width, pil.height))
        assert float(rec["gtk_iou"]) == pytest.approx(iou, abs=1e-10)
        assert int(rec["gtk_hit"]) == (iou > 0.5)
        assert parse_boxes(rec["guess_boxes"]).tolist() == [box] * 5


def test_threshold_curve_agrees_with_the_run(photo_crop_run) -> None:
    """The --select-on curve at the run's own tau reproduces the run's class-averaged accuracies."""
    from bench.run.crop_select import crop_threshold_curve

    _data, run = photo_crop_run
    summary = json.loads(run.summary_path.read_text())
    p = protocol_from_dict(json.loads(run.manifest_path.read_text())["protocol"])
    curve = crop_threshold_curve(run, p, taus=(0.3, 0.5), progress=False).set_index("tau")
    for key in ("top1_loc_acc", "top5_loc_acc", "gt_known_loc_acc"):
        assert curve.loc[0.5, key] == pytest.approx(summary["crop"][key], abs=1e-9)


def test_select_on_test_is_labelled(photo_crop_run, tmp_path: Path) -> None:
    data, _run = photo_crop_run
    out = tmp_path / "res"
    assert main(["run", "--suite", "ilsvrc_loc_crop", "--model", "efficientnet_lite0", "--data", str(data), "--out", str(out),
                 "--select-on", "test", "--workers", "0", *QUIET]) == 0  # fmt: skip
    summary = json.loads((out / "ilsvrc_loc_crop" / "efficientnet_lite0" / "summary.json").read_text())
    assert "optimistic" in summary["box_threshold_chosen_on"]
    assert summary["crop"]["box_threshold"] == summary["box_threshold"]
    assert main(["run", "--suite", "ilsvrc_loc_crop", "--model", "efficientnet_lite0", "--data", str(data), "--out", str(out),
                 "--select-on", "test", "--box-threshold", "0.4", *QUIET]) == 2  # fmt: skip


def test_gradient_methods_and_user_models_run_on_the_crop_suite(tiny_val: Path, tmp_path: Path) -> None:
    for method in ("gradcam", "cam"):
        assert main(["run", "--suite", "ilsvrc_loc_crop", "--model", "simplecnn_gap", "--data", str(tiny_val), "--out", str(tmp_path / method),
                     "--method", method, "--workers", "0", *QUIET]) == 0  # fmt: skip
        (path,) = (tmp_path / method / "ilsvrc_loc_crop").glob("simplecnn_gap*/summary.json")
        summary = json.loads(path.read_text())
        assert summary["scored"] == 18 and summary["crop"]["classes"] == 6
    # a user model (factory outside the registry) gives the registry model's records
    assert main(["run", "--suite", "ilsvrc_loc_crop", "--model", "tests.user_models:simplecnn_gap", "--data", str(tiny_val),
                 "--out", str(tmp_path / "user"), "--workers", "0", *QUIET]) == 0  # fmt: skip
    user = RunDir(tmp_path / "user" / "ilsvrc_loc_crop" / "tests.user_models.simplecnn_gap").read_records()
    assert user.equals(RunDir(tmp_path / "cam" / "ilsvrc_loc_crop" / "simplecnn_gap").read_records())


def test_rescore_refuses_to_cross_pipelines(photo_crop_run, tmp_path: Path) -> None:
    _data, run = photo_crop_run
    assert main(["rescore", str(run.path), "--protocol", "ilsvrc_loc", "--out", str(tmp_path), "--no-progress"]) == 2
    assert main(["rescore", str(run.path), "--protocol", "ilsvrc_loc_crop", "--out", str(tmp_path), "--no-progress"]) == 0
    again = RunDir(tmp_path / "ilsvrc_loc_crop" / run.path.name).read_records()
    assert again.equals(run.read_records())  # the same maps and protocol: the same records


def test_wsol_table_has_the_crop_columns(photo_crop_run, tmp_path: Path) -> None:
    import pandas as pd

    _data, run = photo_crop_run
    table = tmp_path / "t.csv"
    assert main(["table", "--wsol", "--runs", str(run.path.parent.parent), "--format", "csv", "--out", str(table)]) == 0
    row = pd.read_csv(table).iloc[0]
    crop = json.loads(run.summary_path.read_text())["crop"]
    assert row["ilsvrc_top1_loc"] == pytest.approx(round(crop["top1_loc_acc"], 2))
    assert row["ilsvrc_gt_known_loc"] == pytest.approx(round(crop["gt_known_loc_acc"], 2))
    assert pd.isna(row["ilsvrc_maxboxacc_v2"]) and "crop τ" in row["threshold_chosen_on"]


def test_select_on_train_fullsup_picks_tau_on_the_other_split(tiny_val: Path, tmp_path: Path) -> None:
    """cub_loc_crop --select-on train-fullsup: tau is the argmax (smallest of equals) of the held-out
    split's class-averaged Top-1 Loc curve; both splits hold the same images here, so the reported run
    reproduces that accuracy exactly."""
    from bench.data.native_layouts import write_wsol_layout
    from bench.run.crop_select import crop_threshold_curve

    source = open_dataset(tiny_val)
    root = tmp_path / "wsol_cub"
    for split in ("test", "train-fullsup"):
        write_wsol_layout(source, root, "CUB", split, class_folder=lambda i, c: f"{i + 1:03d}.c{i}")
    out = tmp_path / "results"
    assert main(["run", "--suite", "cub_loc_crop", "--model", "simplecnn_gap", "--data", str(root), "--select-on", "train-fullsup",
                 "--out", str(out), "--workers", "0", *QUIET]) == 0  # fmt: skip
    run = RunDir(out / "cub_loc_crop" / "simplecnn_gap")
    side = RunDir(out / "cub_loc_crop" / "simplecnn_gap@train-fullsup")
    summary = run.read_summary()
    assert summary["box_threshold_chosen_on"] == "train-fullsup"
    assert side.read_manifest()["protocol"]["guesses"]["threshold"] == 0.15  # the CUB default for this net
    curve = crop_threshold_curve(side, load_protocol("cub_loc_crop"), progress=False)
    best = curve["top1_loc_acc"].max()
    assert summary["box_threshold"] == curve.loc[curve["top1_loc_acc"] == best, "tau"].min()
    assert summary["crop"]["box_threshold"] == summary["box_threshold"]
    assert summary["crop"]["top1_loc_acc"] == pytest.approx(best, abs=1e-9)


def test_crop_runs_are_not_replayed_as_whole_image_maps(photo_crop_run) -> None:
    from bench.run.replay import ReplayError, RunReplay

    _data, run = photo_crop_run
    with pytest.raises(ReplayError, match="crop suite"):
        RunReplay.open(run.path)


def test_sweeps_refuse_crop_runs(photo_crop_run) -> None:
    from bench.analysis.run_metrics import RunMetricsError, sweep_run

    _data, run = photo_crop_run
    for rules in ("harness", "wsol"):
        with pytest.raises(RunMetricsError, match="centre crop"):
            sweep_run(run, rules=rules, progress=False)
