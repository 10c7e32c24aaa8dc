"""Tests of bench.core.gradmaps: CAM / backprop / Grad-CAM / Grad-CAM++ maps, on small models."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bench.core.cam import class_activation_maps
from bench.core.gradmaps import GRADCAMPP_EPS, default_layer, localization_maps
from bench.models import BenchModel, CamNotApplicable, ModelSpec, build_model

MEAN = (0.0, 0.0, 0.0)
STD = (1.0, 1.0, 1.0)


class TinyCamNet(nn.Module):
    """conv-ReLU-conv-ReLU features (K=6), GAP or GMP, linear to 10 classes (float64)."""

    def __init__(self, pooling: str) -> None:
        super().__init__()
        self.pooling = pooling
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 6, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )  # fmt: skip
        self.fc = nn.Linear(6, 10)

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(x)
        pooled = f.mean(dim=(2, 3)) if self.pooling == "gap" else f.amax(dim=(2, 3))
        return self.fc(pooled), f

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        return self.fc.weight, self.fc.bias


class LinearNet(nn.Module):
    """logits = W x.flatten() + b: the saliency of class c is max_channel |W[c]| exactly."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(3 * size * size, 4)

    def forward_cam(self, x: Tensor) -> tuple[Tensor, None]:
        return self.lin(x.flatten(1)), None

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        raise CamNotApplicable("fc")


def wrap(net: nn.Module, head: str, size: int) -> BenchModel:
    spec = ModelSpec(f"tiny_{head}", None, "tiny", head, size, 0, MEAN, STD, "test")
    return BenchModel(spec, net).double().eval()


@pytest.mark.parametrize("head", ["gap", "gmp"])
def test_gradcam_is_relu_cam_over_hw(head: str) -> None:
    # GAP: d logit_c / d F_k(x, y) = W[c, k] / (h w) -> alpha_k = W[c, k] / (h w).
    # GMP: the gradient is W[c, k] at the argmax of channel k only (unique for random input),
    # so its spatial mean is W[c, k] / (h w) as well. Either way Grad-CAM = ReLU(CAM) / (h w).
    torch.manual_seed(0)
    model = wrap(TinyCamNet(head), head, 12)
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    classes = torch.tensor([[0, 7], [3, 3], [9, 1]])
    with torch.no_grad():
        _, feats = model(x)
    h, w = feats.shape[-2:]
    flat = feats.flatten(2)
    assert (flat.max(dim=2).values.unsqueeze(-1) == flat).sum(dim=2).eq(1).all()  # unique argmaxes
    cam = class_activation_maps(feats, model.classifier()[0].detach(), classes)
    grad = localization_maps(model, x, classes, "gradcam")
    assert grad.shape == (3, 2, h, w)
    torch.testing.assert_close(grad, cam.relu() / (h * w), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(localization_maps(model, x, classes, "cam"), cam)


def test_gradcampp_closed_form_on_a_gap_head() -> None:
    # GAP head: g_k = W[c, k] / (h w) everywhere, so alpha = g^2 / (2 g^2 + S_k g^3 + eps)
    # (S_k = sum of channel k) and w_k = h w * ReLU(g_k) * alpha_k where g_k != 0.
    torch.manual_seed(1)
    model = wrap(TinyCamNet("gap"), "gap", 10)
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    classes = torch.tensor([[2], [5]])
    with torch.no_grad():
        _, feats = model(x)
    h, w = feats.shape[-2:]
    weight = model.classifier()[0].detach()
    expected = []
    for b in range(2):
        g = weight[classes[b, 0]] / (h * w)  # (K,)
        s = feats[b].sum(dim=(1, 2))
        alpha = g**2 / (2 * g**2 + s * g**3 + GRADCAMPP_EPS)
        wk = h * w * torch.relu(g) * alpha
        expected.append(torch.relu(torch.einsum("k,khw->hw", wk, feats[b])))
    got = localization_maps(model, x, classes, "gradcampp")
    torch.testing.assert_close(got[:, 0], torch.stack(expected), rtol=1e-9, atol=1e-12)


def test_backprop_of_a_linear_model_is_abs_weight() -> None:
    torch.manual_seed(2)
    size = 5
    model = wrap(LinearNet(size), "fc", size)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    classes = torch.tensor([[1, 3], [0, 1]])
    sal = localization_maps(model, x, classes, "backprop")
    weight = model.net.lin.weight.detach().reshape(4, 3, size, size)
    expected = torch.stack([torch.stack([weight[c].abs().amax(dim=0) for c in row]) for row in classes.tolist()])
    assert sal.shape == (2, 2, size, size)
    torch.testing.assert_close(sal, expected, rtol=0, atol=0)


def test_backprop_shape_and_sign_on_a_conv_net() -> None:
    torch.manual_seed(3)
    model = wrap(TinyCamNet("gap"), "gap", 12)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    sal = localization_maps(model, x, torch.tensor([[0, 1, 2], [3, 4, 5]]), "backprop")
    assert sal.shape == (2, 3, 12, 12) and (sal >= 0).all() and sal.sum() > 0


def test_batch_equals_one_image_at_a_time_and_params_untouched() -> None:
    torch.manual_seed(4)
    model = wrap(TinyCamNet("gmp"), "gmp", 12)
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    classes = torch.tensor([[1, 2], [3, 4], [5, 6]])
    for method in ("backprop", "gradcam", "gradcampp"):
        batch = localization_maps(model, x, classes, method)
        for i in range(3):
            single = localization_maps(model, x[i : i + 1], classes[i : i + 1], method)
            torch.testing.assert_close(batch[i : i + 1], single, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_works_under_inference_mode() -> None:
    torch.manual_seed(5)
    model = wrap(TinyCamNet("gap"), "gap", 12)
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    classes = torch.tensor([[4]])
    outside = localization_maps(model, x, classes, "gradcampp")
    with torch.inference_mode():
        xi = x.clone()  # an inference tensor, as the engine has
        inside = localization_maps(model, xi, classes, "gradcampp")
        sal = localization_maps(model, xi, classes, "backprop")
    torch.testing.assert_close(inside, outside)
    assert sal.shape == (1, 1, 12, 12)


def test_named_layer_hook_is_safe_with_inplace_relu() -> None:
    # features.2 is a conv followed by ReLU(inplace=True): the hook keeps the pre-ReLU output
    # (it hands a clone downstream), so Grad-CAM on it is ReLU(sum_k alpha_k A_k) of the
    # pre-activation A; on features.3 (the ReLU) it equals the default layer.
    torch.manual_seed(6)
    model = wrap(TinyCamNet("gap"), "gap", 12)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    classes = torch.tensor([[1], [2]])
    default = localization_maps(model, x, classes, "gradcam")
    torch.testing.assert_close(localization_maps(model, x, classes, "gradcam", layer="features.3"), default)
    pre = localization_maps(model, x, classes, "gradcam", layer="net.features.2")
    assert pre.shape == default.shape and not torch.allclose(pre, default)
    with pytest.raises(ValueError, match="no module"):
        localization_maps(model, x, classes, "gradcam", layer="features.99")


def test_fc_nets_default_to_the_last_conv_relu() -> None:
    model, _ = build_model("alexnet", pretrained=False)
    model.eval()
    assert default_layer(model) == "net.features.11"  # conv5's ReLU (pool5 is features.12)
    x = torch.randn(1, 3, 64, 64)
    maps = localization_maps(model, x, torch.tensor([[0, 1]]), "gradcam")
    assert maps.shape == (1, 2, 3, 3) and (maps >= 0).all()
    with pytest.raises(CamNotApplicable):
        localization_maps(model, x, torch.tensor([[0]]), "cam")


def test_bad_arguments() -> None:
    model = wrap(TinyCamNet("gap"), "gap", 8)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        localization_maps(model, x, torch.tensor([[0]]), "smoothgrad")
    with pytest.raises(ValueError, match="classes"):
        localization_maps(model, x, torch.tensor([0]), "gradcam")
    model.train()
    with pytest.raises(ValueError, match="eval"):
        localization_maps(model, x, torch.tensor([[0]]), "gradcam")
