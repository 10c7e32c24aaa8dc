"""bench.core.wsol against a from-the-definition re-implementation, cell for cell, and hand-computed PxAP.

The definition (docs/wsol.md): at threshold tau the binary map is ``uint8(m * 255) > int(tau * max)``;
its contours are the outer borders of the 8-connected foreground components and the borders of
their holes (4-connected background components not touching the image edge); a component's box is
``(x0, y0, x1 + 1, y1 + 1)``, a hole's ``(hx0 - 1, hy0 - 1, hx1 + 2, hy1 + 2)`` (its border lies one
pixel outside it), right/bottom clipped to 223; no contour -> ``(0, 0, 0, 0)``. Computed here with
scipy.ndimage, not OpenCV.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

cv2 = pytest.importorskip("cv2")

from bench.core import wsol  # noqa: E402

EIGHT = np.ones((3, 3), dtype=bool)
FOUR = ndimage.generate_binary_structure(2, 1)


def definition_boxes(binary: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Every contour's box of a boolean map, from the definition (components and holes)."""
    h, w = binary.shape
    out = []
    lab, n = ndimage.label(binary, structure=EIGHT)
    for sl in ndimage.find_objects(lab):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop - 1, sl[1].start, sl[1].stop - 1
        out.append((x0, y0, min(x1 + 1, w - 1), min(y1 + 1, h - 1)))
    bg, m = ndimage.label(~binary, structure=FOUR)
    for k, sl in enumerate(ndimage.find_objects(bg), start=1):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop - 1, sl[1].start, sl[1].stop - 1
        if x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1:
            continue  # background reaching the edge is not a hole
        out.append((x0 - 1, y0 - 1, min(x1 + 2, w - 1), min(y1 + 2, h - 1)))
    return out


def shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def iou(a, b) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def definition_hits(scoremap, gt, thresholds, deltas=(30, 50, 70)):
    q = (scoremap * 255).astype(np.uint8)
    all_hits = np.zeros((len(deltas), len(thresholds)), dtype=bool)
    largest_choices = []  # per tau: the set of best IoUs of the maximal-area contours
    for j, tau in enumerate(thresholds):
        binary = q > int(tau * int(q.max()))
        boxes = definition_boxes(binary) or [(0, 0, 0, 0)]
        best = max(iou(b, g) for b in boxes for g in gt)
        all_hits[:, j] = [best >= d / 100 for d in deltas]
        # largest by polygon area: areas by the shoelace formula over the full border chain
        contours = cv2.findContours(binary.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)[-2]
        if not contours:
            largest_choices.append([max(iou((0, 0, 0, 0), g) for g in gt)])
            continue
        areas = [shoelace(c[:, 0, :]) for c in contours]
        top = max(areas)
        cands = []
        for c, a in zip(contours, areas):
            if a == top:
                xs, ys = c[:, 0, 0], c[:, 0, 1]
                box = (xs.min(), ys.min(), min(xs.max() + 1, q.shape[1] - 1), min(ys.max() + 1, q.shape[0] - 1))
                cands.append(max(iou(box, g) for g in gt))
        largest_choices.append(cands)
    return all_hits, largest_choices


def random_map(rng, kind: str) -> np.ndarray:
    if kind == "blobs":
        m = ndimage.gaussian_filter(rng.random((224, 224)), 6)
    elif kind == "ring":
        yy, xx = np.mgrid[:224, :224]
        r = np.hypot(yy - rng.integers(60, 160), xx - rng.integers(60, 160))
        m = np.exp(-((r - rng.uniform(20, 50)) ** 2) / 60) + 0.05 * rng.random((224, 224))
    elif kind == "ties":  # two identical squares: equal polygon areas
        m = np.zeros((224, 224))
        s = int(rng.integers(5, 30))
        m[20 : 20 + s, 30 : 30 + s] = 1
        m[120 : 120 + s, 100 : 100 + s] = 1
        m += 0.001 * rng.random((224, 224))
    else:  # flat: constant map -> zeros -> no foreground anywhere
        m = np.full((224, 224), 0.3)
    return wsol.normalize_scoremap(m.astype(np.float32))


@pytest.mark.parametrize("kind", ["blobs", "ring", "ties", "flat"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxacc_cell_for_cell(kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = random_map(rng, kind)
    gt = [tuple(int(v) for v in sorted(rng.integers(0, 224, 2))) for _ in range(2)]
    gt = [(a, c, b, d) for (a, b), (c, d) in zip(gt, gt[::-1])]
    gt = np.array([[min(g[0], g[2]), min(g[1], g[3]), max(g[0], g[2]), max(g[1], g[3])] for g in gt])
    thresholds = wsol.wsol_thresholds(0.01)
    largest, every = wsol.image_box_hits(m, gt, thresholds)
    want_all, choices = definition_hits(m, [tuple(g) for g in gt], thresholds)
    np.testing.assert_array_equal(every, want_all)
    for j, cands in enumerate(choices):
        got = largest[:, j]
        allowed = [np.array([c >= d / 100 for d in (30, 50, 70)]) for c in cands]
        assert any(np.array_equal(got, a) for a in allowed), (kind, seed, j)


def test_ring_hits_through_its_hole_in_v2_only() -> None:
    """A ring around the GT box: the outer contour's box is too big, the hole's box fits it."""
    m = np.zeros((224, 224), dtype=np.float32)
    m[50:150, 50:150] = 1.0
    m[60:140, 60:140] = 0.0  # hole 60..139 -> hole contour box (59, 59, 141, 141)
    gt = np.array([[59, 59, 141, 141]])
    largest, every = wsol.image_box_hits(m, gt, [0.5])
    assert every[:, 0].tolist() == [True, True, True]
    # outer box (50, 50, 150, 150): IoU = 83^2 / 101^2 = 0.675 -> hits at 30 and 50, not 70
    assert largest[:, 0].tolist() == [True, True, False]


def test_no_foreground_is_box_zero() -> None:
    m = wsol.normalize_scoremap(np.full((7, 7), 2.0, dtype=np.float32))
    assert not m.any()
    lg, al = wsol.scoremap_boxes(m, [0.0, 0.5])
    assert [b.tolist() for b in lg] == [[[0, 0, 0, 0]]] * 2 and [b.tolist() for b in al] == [[[0, 0, 0, 0]]] * 2
    # (0,0,0,0) still scores against a GT box at the origin, as in the reference
    largest, _ = wsol.image_box_hits(m, np.array([[0, 0, 1, 0]]), [0.0])
    assert largest[:, 0].tolist() == [True, True, False]  # IoU 1/2


def test_gt_scaling_truncates() -> None:
    # CUB image 1 (500 x 335): 60,27,385,331 -> int(60*224/500)=26, int(27*224/335)=18, ...
    got = wsol.scale_gt_boxes(np.array([[60, 27, 385, 331]]), (500, 335))
    assert got.tolist() == [[int(60 * 224 / 500), int(27 * 224 / 335), int(385 * 224 / 500), int(331 * 224 / 335)]]
    assert got.tolist() == [[26, 18, 172, 221]]


def test_threshold_is_strict_on_int_of_tau_max() -> None:
    m = np.zeros((10, 10), dtype=np.float32)
    m[2, 2] = 1.0  # q = 255
    m[5, 5] = 100 / 255  # q = 100 (float32 * 255 truncates to 99 or 100)
    q5 = int((m * 255).astype(np.uint8)[5, 5])
    lg, al = wsol.scoremap_boxes(m, [q5 / 255 + 1e-9, (q5 - 1) / 255 + 1e-9])
    # int(tau*255) == q5 -> strict: pixel (5,5) is out; one below -> it is in
    assert len(al[0]) == 1 and len(al[1]) == 2


def test_pxap_hand_computed() -> None:
    """Ranking fg 0.9, bg 0.6, fg 0.3, bg 0.1 (ignore 0.95 left out): AP = (1 + 2/3) / 2."""
    scores = np.array([[0.9, 0.6, 0.3, 0.1, 0.95]])
    mask = np.array([[1, 0, 1, 0, 255]], dtype=np.uint8)
    t, f = wsol.mask_histograms(scores, mask, [0.0, 0.25, 0.5, 0.75])
    assert t.tolist() == [0, 1, 0, 1, 0, 0] and f.tolist() == [1, 0, 1, 0, 0, 0]
    assert wsol.pxap_from_histograms(t, f) == pytest.approx(100 * (1 + 2 / 3) / 2, abs=1e-12)


def test_openimages_masks_several_instances_ignore_and_empty_ignore(tmp_path) -> None:
    """Two images at 224 x 224: A has two instances and an ignore box, B one instance and no
    ignore file (the empty ignore field). Hand-computed PxAP over both."""
    from PIL import Image

    def png(name, arr):
        Image.fromarray(arr.astype(np.uint8)).save(tmp_path / name)
        return tmp_path / name

    z = np.zeros((224, 224))
    a1 = z.copy(); a1[0:10, 0:10] = 255  # 100 px
    a2 = z.copy(); a2[100:110, 100:105] = 255  # 50 px
    ign = z.copy(); ign[0:20, 0:20] = 255  # ignore box; minus fg -> 300 px ignored
    b1 = z.copy(); b1[50:60, 50:60] = 255  # 100 px
    mask_a = wsol.gt_mask([png("a1.png", a1), png("a2.png", a2)], png("ai.png", ign))
    mask_b = wsol.gt_mask([png("b1.png", b1)], None)
    assert (mask_a == 1).sum() == 150 and (mask_a == 255).sum() == 300 and (mask_b == 255).sum() == 0
    # maps already 224 x 224 with min 0 and max 1: resize and normalisation leave them unchanged
    cam_a = np.zeros((224, 224), dtype=np.float32)
    cam_a[0:20, 0:20] = 1.0  # the ignore region and instance 1 score 1; instance 2 scores 0
    cam_b = np.zeros((224, 224), dtype=np.float32)
    cam_b[50:60, 50:60] = 0.5
    cam_b[0, 0] = 1.0  # one background pixel above the object
    acc = wsol.MaskAccumulator(wsol.wsol_thresholds(0.25))
    acc.add_cam(cam_a, [tmp_path / "a1.png", tmp_path / "a2.png"], tmp_path / "ai.png")
    acc.add_cam(cam_b, [tmp_path / "b1.png"], None)
    # fg: 100 @1.0, 50 @0, 100 @0.5; bg: 1 @1.0, rest @0 (224^2 - 450 + 224^2 - 101 pixels)
    # ranking by score: {100 fg, 1 bg} @1.0, {100 fg} @0.5, {50 fg, many bg} @0
    # bins (right edges 0, .25, .5, .75, 1, 2, 3): scores 1.0 fall in [1, 2), 0.5 in [.5, .75), 0 in [0, .25)
    p1, r1 = 100 / 101, 100 / 250
    p2, r2 = 200 / 201, 200 / 250
    n_bg = 2 * 224 * 224 - 450 - 101
    p3, r3 = 250 / (250 + n_bg + 1), 1.0
    expected = 100 * (p1 * r1 + p2 * (r2 - r1) + p3 * (r3 - r2))
    assert acc.pxap() == pytest.approx(expected, rel=1e-12)


def test_batched_contour_boxes_equal_opencvs_per_contour_calls() -> None:
    """scoremap_boxes computes boxes and areas of all thresholds' contours in one numpy pass; they
    equal cv2.boundingRect / cv2.contourArea called per contour (the reference's loop), the largest
    being the first of equal areas, on smooth, noisy, holed and edge-touching maps."""
    import torch

    def reference(scoremap: np.ndarray, thresholds: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        q = (scoremap * 255).astype(np.uint8)
        largest, every = [], []
        none = np.zeros((1, 4), dtype=np.int64)
        for tau in thresholds:
            binary = ((q > int(tau * q.max())) * np.uint8(255)).astype(np.uint8)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            if not contours:
                largest.append(none)
                every.append(none)
                continue
            h, w = binary.shape
            boxes = np.array([(x, y, min(x + bw, w - 1), min(y + bh, h - 1)) for x, y, bw, bh in map(cv2.boundingRect, contours)])
            areas = [cv2.contourArea(c) for c in contours]
            k = areas.index(max(areas))  # the first of equal maxima
            largest.append(boxes[k : k + 1])
            every.append(boxes)
        return largest, every

    rng = np.random.default_rng(0)
    thresholds = wsol.wsol_thresholds(0.01)
    for i in range(12):
        grid = rng.random((int(rng.integers(2, 29)), int(rng.integers(2, 29)))).astype(np.float32)
        if i % 3 == 0:
            grid[:, :2] = 1.0  # foreground on the map's edge
        cam = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None], size=(224, 224), mode="bilinear", align_corners=False)[0, 0].numpy()
        if i % 4 == 1:
            cam = cam + 0.3 * rng.random(cam.shape, dtype=np.float32)  # many small contours and holes, equal areas
        scoremap = wsol.normalize_scoremap(cam)
        got, want = wsol.scoremap_boxes(scoremap, thresholds), reference(scoremap, thresholds)
        for a, b in zip(got[0] + got[1], want[0] + want[1]):
            np.testing.assert_array_equal(a, b)
