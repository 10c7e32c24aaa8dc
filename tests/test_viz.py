"""`bench show` overlays and threshold curves: pixels read back from the PNGs at exact coordinates.

Unit tests draw on synthetic images with known boxes and maps; the end-to-end tests replay a real
run (EfficientNet-Lite0 with its packaged ImageNet weights on the eight real photographs, made with
`bench run` as a user would) and check the written PNGs and curve CSV against the run's records,
its summary and hand computations.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from tests.conftest import PhotoRuns
from bench.core.records import parse_boxes, parse_ints
from bench.run.replay import ReplayError, RunReplay
from bench.report.overlays import (
    GT_COLOR,
    HALO_COLOR,
    HIT_COLOR,
    MISS_COLOR,
    TURBO_LUT,
    BoxMark,
    blend_cam,
    compose_side_by_side,
    line_width_for,
    normalize_cam,
    panel_scale,
    render_panel,
    render_run_images,
    select_images,
    turbo_lut,
)

COMMON = ["--workers", "0", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def runs(photo_runs: PhotoRuns) -> PhotoRuns:
    return photo_runs


@pytest.fixture(scope="module")
def replay(runs: PhotoRuns) -> RunReplay:
    """The top-5 run reopened once; every map it computes is kept (8 photos), so each is computed once."""
    opened = RunReplay.open(runs.top5, device="cpu")
    opened.retain(opened.run_image_ids())
    return opened


def _px(img: np.ndarray, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in img[y, x])  # type: ignore[return-value]


# ---- colormap and blending ---------------------------------------------------------------------------
def test_turbo_lut_runs_from_near_black_through_blue_green_yellow_to_dark_red() -> None:
    lut = turbo_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert np.array_equal(lut, TURBO_LUT)
    assert int(lut[0].max()) < 60  # near black (the polynomial fit starts darker than the table)
    for i in (10, 20, 30):  # then blue
        assert int(lut[i][2]) > int(lut[i][0]) and int(lut[i][2]) > int(lut[i][1])
    assert int(lut[128][1]) > 200 and int(lut[128][1]) > int(lut[128][2])  # green-yellow middle
    r1, g1, b1 = (int(v) for v in lut[255])
    assert r1 > 3 * max(g1, b1) and r1 < 160  # dark red
    # Smooth: no jump larger than a few levels between neighbouring entries.
    assert np.abs(np.diff(lut.astype(int), axis=0)).max() <= 16


def test_blend_is_half_photo_half_colormap_of_the_max_normalised_map() -> None:
    rgb = np.full((4, 5, 3), 100, dtype=np.uint8)
    cam = np.array([[-2.0, 0.0, 1.0, 2.0, 4.0]] * 4)
    out = blend_cam(rgb, cam, alpha=0.5)
    for x, frac in enumerate([0.0, 0.0, 0.25, 0.5, 1.0]):
        colour = TURBO_LUT[int(round(frac * 255))].astype(float)
        expected = np.rint(0.5 * 100 + 0.5 * colour)
        assert np.array_equal(out[2, x], expected), (x, out[2, x], expected)
    assert np.array_equal(normalize_cam(-cam * 0 - 1), np.zeros((4, 5)))  # max <= 0: nothing shown


# ---- drawing at exact pixels --------------------------------------------------------------------------
def test_panel_draws_boxes_on_their_inclusive_edges_with_a_halo_outside() -> None:
    h, w = 120, 160
    rgb = np.full((h, w, 3), 128, dtype=np.uint8)
    lw = line_width_for(h, w)
    gt = (40, 30, 100, 90)
    hit = (20, 60, 140, 110)
    miss = (5, 5, 30, 25)
    img = np.asarray(render_panel(rgb, None, [BoxMark(hit, HIT_COLOR, ""), BoxMark(miss, MISS_COLOR, ""), BoxMark(gt, GT_COLOR, "")]))
    assert img.shape == (h, w, 3)  # no scaling, no padding
    x1, y1, x2, y2 = gt
    ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
    for x, y in [(x1, ym), (x2, ym), (xm, y1), (xm, y2), (x1 + lw - 1, ym), (x2 - lw + 1, ym)]:
        assert _px(img, x, y) == GT_COLOR, (x, y)
    assert _px(img, x1 - 1, y1 + 5) == HALO_COLOR and _px(img, x2 + 1, y1 + 5) == HALO_COLOR
    assert _px(img, x1 + lw, y1 + 5) == (128, 128, 128)  # the line goes inward lw pixels only
    # GT outlines are drawn over guesses: where the hit box's top edge crosses the GT box's left edge.
    assert _px(img, x1, hit[1]) == GT_COLOR
    assert _px(img, hit[0], 100) == HIT_COLOR and _px(img, hit[2], 100) == HIT_COLOR
    assert _px(img, miss[0], 15) == MISS_COLOR and _px(img, 17, miss[3]) == MISS_COLOR


def test_small_photos_are_enlarged_by_whole_blocks_and_boxes_cover_whole_blocks() -> None:
    assert panel_scale(122, 143) == 3 and panel_scale(300, 451) == 1 and panel_scale(1, 1) == 8
    h, w, s = 30, 40, 3
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(w, dtype=np.uint8)[None, :] * 5  # every column its own red level
    rgb[..., 1] = np.arange(h, dtype=np.uint8)[:, None] * 7
    box = (10, 8, 25, 20)
    img = np.asarray(render_panel(rgb, None, [BoxMark(box, GT_COLOR, "")], scale=s))
    assert img.shape == (h * s, w * s, 3)
    # Away from the box, original pixel (x, y) is the uniform 3x3 block at (3x, 3y).
    for x, y in [(0, 0), (5, 27), (39, 29), (30, 3)]:
        block = img[y * s : (y + 1) * s, x * s : (x + 1) * s].reshape(-1, 3)
        assert (block == rgb[y, x]).all(), (x, y)
    # The box's edge pixels are coloured over their whole blocks, the halo is just outside.
    x1, y1, x2, y2 = box
    ym = (y1 + y2) // 2
    assert (img[ym * s : (ym + 1) * s, x1 * s] == GT_COLOR).all() and (img[ym * s : (ym + 1) * s, x2 * s + s - 1] == GT_COLOR).all()
    assert _px(img, x1 * s - 1, ym * s) == HALO_COLOR and _px(img, x2 * s + s, ym * s) == HALO_COLOR


def test_labels_sit_above_the_box_when_there_is_room_else_inside() -> None:
    rgb = np.zeros((200, 300, 3), dtype=np.uint8)
    img = np.asarray(render_panel(rgb, None, [BoxMark((50, 100, 250, 190), MISS_COLOR, "tabby IoU 0.12"), BoxMark((10, 0, 120, 60), GT_COLOR, "GT tabby")]))
    above = img[70:97, 50:120].reshape(-1, 3)  # label patch of the first box, just above its top edge
    assert (above == MISS_COLOR).all(axis=1).mean() > 0.3
    assert ((above == 0).all(axis=1)).mean() > 0.02  # black text on the patch
    inside = img[3:20, 12:60].reshape(-1, 3)  # box at y=0: its label goes inside
    assert (inside == GT_COLOR).all(axis=1).mean() > 0.3


# ---- choosing images ----------------------------------------------------------------------------------
def _records(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"image_id": i, "status": s, "gtk_iou": iou, "gtk_box": "0 0 1 1" if s == "ok" else "", "guess_hits": hits} for i, s, iou, hits in rows]
    )


def test_select_worst_best_by_gt_known_iou_then_top1_hit_then_id() -> None:
    frame = _records(
        [
            ("a", "ok", 0.30, "1 0 0 0 0"),
            ("b", "ok", 0.30, "0 0 0 0 0"),
            ("c", "ok", 0.90, "1 0 0 0 0"),
            ("d", "failed", float("nan"), ""),
            ("e", "ok", 0.10, "0 0 0 0 0"),
            ("f", "ok", 0.30, "0 0 0 0 0"),
        ]
    )
    assert select_images(frame, worst=4) == ["e", "b", "f", "a"]  # a top-1 miss is worse than a hit
    assert select_images(frame, best=3) == ["c", "a", "b"]
    assert select_images(frame, worst=50) == ["e", "b", "f", "a", "c"]  # failed images never
    drawn = select_images(frame, random=3, seed=7)
    assert drawn == select_images(frame, random=3, seed=7) and len(set(drawn)) == 3 and "d" not in drawn
    assert select_images(frame, images=["c", "a"]) == ["c", "a"]
    with pytest.raises(ReplayError, match="d \\(failed to decode\\).*zz \\(not in the run\\)"):
        select_images(frame, images=["d", "zz"])
    with pytest.raises(ValueError, match="exactly one"):
        select_images(frame, worst=2, best=2)


# ---- end to end: bench show on the real-photo run -------------------------------------------------------
def test_bench_show_png_has_gt_and_guess_boxes_at_the_records_pixels_and_the_cam_colormap(runs: PhotoRuns, replay: RunReplay, tmp_path: Path) -> None:
    ids = ["PHOTO_val_00000002", "PHOTO_val_00000005"]
    assert main(["show", str(runs.top5), "--images", *ids, "--out", str(tmp_path), "--device", "cpu"]) == 0
    overlays = render_run_images(replay, ids)
    records = replay.records.set_index("image_id")
    for overlay, image_id in zip(overlays, ids):
        png = np.asarray(Image.open(tmp_path / "ilsvrc_loc" / runs.top5.name / f"{image_id}.png").convert("RGB"))  # per run
        assert np.array_equal(png, np.asarray(overlay.image))  # the CLI wrote exactly this layout
        assert overlay.warnings == []  # replayed top-5 and boxes equal the records
        rec = records.loc[image_id]
        gt = replay.valset.get(image_id)
        h, w = int(rec["height"]), int(rec["width"])
        lw = line_width_for(h, w)
        left, right = overlay.panels
        assert left.scale == right.scale == 1  # big enough: shown at original size
        assert (left.width, left.height) == (w, h) and (right.width, right.height) == (w, h)
        assert right.x == left.x + w + 8 and right.y == left.y
        for panel in (left, right):
            for x1, y1, x2, y2 in gt.boxes:
                ym, xm = (y1 + y2) // 2, (x1 + x2) // 2
                for x, y in [(x1, ym), (x2, ym), (xm, y2)]:
                    assert _px(png, panel.x + x, panel.y + y) == GT_COLOR, (image_id, panel.title, x, y)

        def check_box(panel, box, hit: bool) -> None:  # noqa: ANN001 - a Panel
            colour = HIT_COLOR if hit else MISS_COLOR
            bx1, by1, bx2, by2 = (int(v) for v in box)
            ym, xm = (by1 + by2) // 2, (bx1 + bx2) // 2
            checked = 0
            for x, y in [(bx1, ym), (bx2, ym), (xm, by2)]:
                on_gt = any((abs(x - g[0]) < lw or abs(x - g[2]) < lw or abs(y - g[1]) < lw or abs(y - g[3]) < lw) for g in gt.boxes)
                if not on_gt:
                    assert _px(png, panel.x + x, panel.y + y) == colour, (image_id, x, y)
                    checked += 1
            assert checked >= 2

        top1_box = parse_boxes(rec["guess_boxes"])[0]
        check_box(left, top1_box, bool(parse_ints(rec["guess_hits"])[0]))
        check_box(right, parse_boxes(rec["gtk_box"])[0], bool(rec["gtk_hit"]))

        # The CAM colormap: the GT-class panel is 0.5 * photo + 0.5 * turbo(M / max M) wherever nothing is drawn.
        maps = next(replay.iter_maps([image_id]))
        photo = np.asarray(Image.open(gt.path).convert("RGB")).astype(float)
        cam = maps.maps[1]
        index = np.rint(np.clip(cam / cam.max(), 0, 1) * 255).astype(int)
        expected = np.rint(0.5 * photo + 0.5 * TURBO_LUT[index])
        shown = png[right.y : right.y + h, right.x : right.x + w].astype(float)
        close = (np.abs(shown - expected) <= 1).all(axis=2)
        assert close.mean() > 0.9, close.mean()  # boxes and labels cover the rest
        yy, xx = np.unravel_index(np.argmax(cam), cam.shape)
        assert close[yy, xx] and np.allclose(shown[yy, xx], np.rint(0.5 * photo[yy, xx] + 0.5 * TURBO_LUT[255]), atol=1)
        assert (np.abs(shown - photo) > 8).any(axis=2).mean() > 0.5  # the map really is there

    assert records.loc["PHOTO_val_00000002", "guess_hits"].split()[0] == "0"  # a miss (red) ...
    assert records.loc["PHOTO_val_00000005", "guess_hits"].split()[0] == "1"  # ... and a hit (yellow)


def test_two_runs_side_by_side_keep_each_panel_at_original_size(runs: PhotoRuns, replay: RunReplay, tmp_path: Path) -> None:
    image_id = "PHOTO_val_00000002"
    assert main(["show", str(runs.top5), str(runs.tight_loose), "--images", image_id, "--out", str(tmp_path), "--device", "cpu"]) == 0
    (path,) = tmp_path.glob(f"ilsvrc_loc/{runs.top5.name}__vs__ilsvrc_loc_tight_loose-{runs.tight_loose.name}/{image_id}__*__vs__*.png")
    png = np.asarray(Image.open(path).convert("RGB"))
    a, b = replay, RunReplay.open(runs.tight_loose)
    pair = compose_side_by_side([render_run_images(a, [image_id])[0], render_run_images(b, [image_id])[0]], [a.label, b.label])
    assert np.array_equal(png, np.asarray(pair.image))
    assert len(pair.panels) == 4 and len({p.y for p in pair.panels}) == 1
    assert [p.x for p in pair.panels] == sorted(p.x for p in pair.panels)
    gt = a.valset.get(image_id).boxes[0]
    for p in pair.panels:
        assert (p.width, p.height) == (600, 400)
        assert _px(png, p.x + int(gt[0]), p.y + int((gt[1] + gt[3]) // 2)) == GT_COLOR
    # The tight/loose run shows both c1 boxes in its top-1 panel: loose and tight, each on its edge.
    rec = b.records.set_index("image_id").loc[image_id]
    loose, tight = parse_boxes(rec["guess_boxes"])[:2]
    third = pair.panels[2]
    colours = {HIT_COLOR, MISS_COLOR}
    assert _px(png, third.x + int(loose[0]), third.y + int(loose[3]) - 1) in colours
    assert _px(png, third.x + int(tight[2]), third.y + int((tight[1] + tight[3]) // 2)) in colours


def test_show_worst_and_refusal_of_changed_data(runs: PhotoRuns, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["show", str(runs.top5), "--worst", "2", "--out", str(tmp_path / "w"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "w" / "ilsvrc_loc" / runs.top5.name).iterdir()) == ["PHOTO_val_00000003.png", "PHOTO_val_00000008.png"]
    other = tmp_path / "other_run"
    shutil.copytree(runs.top5, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["data"]["fingerprint"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["show", str(other), "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "bench show: error:" in err and "not the data of the run" in err and "--data DIR" in err
    assert not (tmp_path / "x").exists()


def _edited_run(src: Path, dst: Path, edit) -> Path:  # noqa: ANN001 - edit(manifest) -> None
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_replay_verifies_weights_sha256_and_refuses_fc_heads(runs: PhotoRuns, tmp_path: Path) -> None:
    bad_sha = _edited_run(runs.top5, tmp_path / "sha", lambda m: m["model"].update(weights_sha256="ab" * 32))
    with pytest.raises(ReplayError, match="changed since the run"):
        RunReplay.open(bad_sha)
    weights = tmp_path / "copy.pth"
    shutil.copyfile(json.loads((runs.top5 / "manifest.json").read_text())["model"]["weights_path"], weights)
    with weights.open("ab") as fh:
        fh.write(b"\0")  # same name, different bytes
    moved = _edited_run(runs.top5, tmp_path / "moved", lambda m: m["model"].update(weights_path=str(weights), weights_source="file"))
    with pytest.raises(ReplayError, match="changed since the run"):
        RunReplay.open(moved)
    fc = _edited_run(runs.top5, tmp_path / "fc", lambda m: m["model"].update(head="fc"))
    with pytest.raises(ReplayError, match="fully connected head"):
        RunReplay.open(fc)


# ---- threshold curves -----------------------------------------------------------------------------------
def _iou_by_hand(a: tuple[int, int, int, int], b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_threshold_curve_matches_the_run_at_its_threshold_and_hand_checks(runs: PhotoRuns, replay: RunReplay, tmp_path: Path) -> None:
    from bench.analysis.curves import DEFAULT_THRESHOLDS, curve_from_boxes, save_curve, threshold_boxes

    tb = threshold_boxes(replay, DEFAULT_THRESHOLDS)
    curve = curve_from_boxes(tb)
    assert tb.top1_mismatches == 0
    assert curve["threshold"].tolist() == [round(0.05 * k, 2) for k in range(20)]
    summary = json.loads((runs.top5 / "summary.json").read_text())
    at = curve.set_index("threshold").loc[0.2]
    assert at["images"] == summary["loc_images"] == 8
    assert at["gt_known_loc_acc"] == pytest.approx(100 - summary["gt_known_loc_err"])
    assert at["top1_loc_acc"] == pytest.approx(100 - summary["top1_loc_err"])
    assert at["mean_gtk_iou"] == pytest.approx(summary["mean_iou"], abs=1e-9)
    assert curve["top1_cls_acc"].iloc[0] == pytest.approx(100 - summary["top1_cls_err"])

    # Whole-image baseline and threshold 0, by hand from the GT boxes and the images' sizes.
    whole_hits, t0_hits = [], []
    for i, gt_boxes in enumerate(tb.gt_boxes):
        h, w = (int(v) for v in tb.sizes[i])
        whole = max(_iou_by_hand((0, 0, w - 1, h - 1), g) for g in gt_boxes)
        whole_hits.append(whole >= 0.5)
        if tb.gtk_min[i] > 0:  # every pixel is foreground at t = 0: the box is the whole image
            assert tb.gtk_boxes[i, 0].tolist() == [0, 0, w - 1, h - 1]
        t0_hits.append(max(_iou_by_hand(tuple(int(v) for v in tb.gtk_boxes[i, 0]), g) for g in gt_boxes) >= 0.5)
    assert (tb.gtk_min > 0).sum() >= 1
    assert curve["whole_image_acc"].iloc[0] == pytest.approx(100 * np.mean(whole_hits))
    assert curve["gt_known_loc_acc"].iloc[0] == pytest.approx(100 * np.mean(t0_hits))

    # Sanity: boxes shrink as the threshold rises; accuracies are percentages; the top-1 localization
    # can never beat top-1 classification.
    frac = curve["mean_gtk_box_frac"].to_numpy()
    assert np.all(np.diff(frac) <= 1e-12) and frac[0] > 0.9 and frac[-1] < 0.05
    for col in ("gt_known_loc_acc", "top1_loc_acc"):
        assert curve[col].between(0, 100).all()
    assert (curve["top1_loc_acc"] <= curve["top1_cls_acc"] + 1e-9).all()

    csv_path, png_path = save_curve(curve, tmp_path)
    back = pd.read_csv(csv_path)
    assert list(back.columns) == list(curve.columns)
    np.testing.assert_allclose(back["gt_known_loc_acc"], curve["gt_known_loc_acc"], atol=1e-6)
    plot = np.asarray(Image.open(png_path).convert("RGB")).astype(int)
    assert plot.shape == (460, 760, 3)
    for colour in [(31, 119, 180), (214, 39, 40)]:  # the two accuracy lines are drawn
        assert (np.abs(plot - colour).sum(axis=2) < 30).sum() > 200


def test_threshold_curve_api_limit_and_bad_thresholds(runs: PhotoRuns, replay: RunReplay) -> None:
    from bench.analysis.curves import threshold_curve

    curve = threshold_curve(replay, [0.1, 0.2, 0.5], limit=3)
    assert curve["threshold"].tolist() == [0.1, 0.2, 0.5] and (curve["images"] == 3).all()
    assert curve.attrs["suite"] == "ilsvrc_loc" and curve.attrs["protocol_thresholds"] == [0.2]
    with pytest.raises(ValueError, match="strictly increasing"):
        threshold_curve(replay, [0.5, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        threshold_curve(replay, [0.5, 1.0])
