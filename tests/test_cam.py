"""Tests of bench.core.cam: the CAM formula and the upsampling, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from bench.core.cam import class_activation_maps, upsample_cam
from tests.tolerances import EPS32, linear_bound, sum_bound


def test_cam_hand_example() -> None:
    # B=1, K=2, h=w=2.  F_0 = [[1, 2], [3, 4]], F_1 = [[0, 1], [0, 1]]
    feats = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    # W rows: class 0 = (1, 0), class 1 = (0, 2), class 2 = (1, -1)
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    cams = class_activation_maps(feats, weight, torch.tensor([[2, 0, 1]]))
    expected = torch.tensor(
        [[
            [[1.0, 1.0], [3.0, 3.0]],   # class 2: F_0 - F_1
            [[1.0, 2.0], [3.0, 4.0]],   # class 0: F_0
            [[0.0, 2.0], [0.0, 2.0]],   # class 1: 2 F_1
        ]]
    )  # fmt: skip
    assert cams.shape == (1, 3, 2, 2) and cams.dtype == torch.float32
    torch.testing.assert_close(cams, expected, rtol=0, atol=0)


def test_cam_batch_selects_each_images_classes() -> None:
    torch.manual_seed(0)
    feats = torch.randn(3, 5, 4, 6)
    weight = torch.randn(10, 5)
    classes = torch.tensor([[9, 0], [3, 3], [1, 8]])
    cams = class_activation_maps(feats, weight, classes)
    assert cams.shape == (3, 2, 4, 6)
    for b in range(3):
        for j in range(2):
            w = weight[classes[b, j]].double()
            ref = sum(w[k] * feats[b, k].double() for k in range(5))  # float64
            bound = sum_bound(5, sum(w[k].abs() * feats[b, k].double().abs() for k in range(5)))
            assert ((cams[b, j].double() - ref).abs() <= bound).all()


def test_cam_gap_identity_no_bias() -> None:
    # mean_xy(M_c) == W[c] . mean_xy(F): the GAP logit without its bias
    torch.manual_seed(1)
    feats = torch.rand(2, 8, 5, 5)
    weight = torch.randn(4, 8)
    cams = class_activation_maps(feats, weight, torch.arange(4).expand(2, 4))
    exact = feats.double().mean((2, 3)) @ weight.double().T
    bound = linear_bound(feats.abs().mean((2, 3)), weight, pooled_terms=5 * 5 + 1)
    assert ((cams.mean((2, 3)).double() - exact).abs() <= bound).all()
    assert ((feats.mean((2, 3)) @ weight.T).double() - exact).abs().le(bound).all()


def test_cam_half_inputs_computed_in_float32() -> None:
    feats = torch.full((1, 2, 1, 1), 300.0, dtype=torch.float16)
    weight = torch.tensor([[300.0, 300.0]], dtype=torch.float16)
    cams = class_activation_maps(feats, weight, torch.tensor([[0]]))
    # 2 * 300 * 300 = 180000 overflows float16 (max 65504) but not float32
    assert cams.dtype == torch.float32 and float(cams) == 180000.0
    f64 = class_activation_maps(feats.double(), weight, torch.tensor([[0]]))
    assert f64.dtype == torch.float64


def test_cam_rejects_bad_inputs() -> None:
    feats = torch.zeros(2, 3, 4, 4)
    weight = torch.zeros(5, 3)
    ok = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="K=3"):
        class_activation_maps(feats, torch.zeros(5, 4), ok)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        class_activation_maps(feats, weight, torch.tensor([[0], [5]]))
    with pytest.raises(ValueError, match="integer"):
        class_activation_maps(feats, weight, ok.float())
    with pytest.raises(ValueError, match="rows"):
        class_activation_maps(feats, weight, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError):
        class_activation_maps(feats[0], weight, ok)


def test_upsample_bilinear_hand_values() -> None:
    # align_corners=False, 1x2 -> 1x4: source x = (dst + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
    # clamped to [0, 1] -> weights give 0, 0.25*4, 0.75*4, 4
    cam = torch.tensor([[[0.0, 4.0]]])
    out = upsample_cam(cam, (1, 4))
    # bilinear: 4 weighted terms (weights summing to 1) of values <= 4 per output pixel, plus the
    # rounding of the weights themselves: within 8 * eps * max|value|
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0, 3.0, 4.0]]]), rtol=0, atol=8 * EPS32 * 4.0)
    # 2x2 -> 4x4 is separable: rows and columns both follow the 1D rule
    cam2 = torch.tensor([[[0.0, 4.0], [8.0, 12.0]]])
    out2 = upsample_cam(cam2, (4, 4))
    col = torch.tensor([0.0, 1.0, 3.0, 4.0])
    expected = (2.0 * col)[:, None] + col[None, :]  # M(y, x) = 8 * v(y) + 4 * v(x), v in [0, 1]
    torch.testing.assert_close(out2[0], expected, rtol=0, atol=8 * EPS32 * 12.0)


def test_upsample_shapes_modes_and_constants() -> None:
    cam = torch.full((3, 7, 7), 2.5)
    for mode in ("bilinear", "bicubic"):
        out = upsample_cam(cam, (375, 500), mode=mode)
        assert out.shape == (3, 375, 500) and out.dtype == torch.float32
        # bicubic: 4 x 4 terms with weights of absolute sum <= 1.375 per axis (a = -0.75);
        # 16 roundings of terms up to 1.375^2 * 2.5 bound the error
        torch.testing.assert_close(out, torch.full((3, 375, 500), 2.5), rtol=0, atol=16 * EPS32 * 1.375**2 * 2.5)
    batched = upsample_cam(torch.zeros(2, 3, 7, 7), (10, 20))
    assert batched.shape == (2, 3, 10, 20)
    with pytest.raises(ValueError):
        upsample_cam(cam, (10, 10), mode="nearest")
    with pytest.raises(ValueError):
        upsample_cam(cam, (0, 10))
