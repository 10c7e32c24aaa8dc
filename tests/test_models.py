"""Tests of bench.models: registry, shapes/grids, the CAM identity, weights sources and safety.

Expected grids are derived by hand from the layer arithmetic (224x224 input):

* AlexNet: conv1 k11 s4 p2 -> floor((224 + 4 - 11) / 4) + 1 = 55; maxpool k3 s2 -> 27;
  conv2 (same) 27; maxpool -> 13; conv3..conv5 keep 13.          => 13 (pool5 dropped)
* VGG16: four 2x2 max-pools before conv5_3: 224 / 16 = 14.        => 14 (pool5 dropped)
* GoogLeNet to inception4e: conv1 s2 -> 112; maxpool1 -> 56; maxpool2 -> 28; maxpool3 -> 14.
  => 14; full GoogLeNet adds maxpool4 -> 7.
* ResNet-50: total stride 32: 224 / 32 = 7.
* EfficientNet-Lite: five stride-2 stages with "same" padding, each ceil(n/2):
  224 -> 7, 240 -> 120, 60, 30, 15, 8, 260 -> 130, 65, 33, 17, 9.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm

from bench.core.cam import class_activation_maps
from bench.models import (
    MODELS,
    PAPER_NAMES,
    BenchModel,
    CamNotApplicable,
    UnknownModelError,
    UnsafeWeightsFile,
    WeightsError,
    WeightsMismatch,
    WeightsNotFound,
    build_backbone_init,
    build_model,
    list_models,
)
from bench.models import sources
from bench.models.surgery import imagenet_to_half_normalization
from tests.tolerances import EPS32, linear_bound, sum_bound

torch.set_num_threads(min(2, os.cpu_count() or 1))

# name: (head, input size, grid, feature channels K) -- see the module docstring.
EXPECTED: dict[str, tuple[str, int, int, int | None]] = {
    "alexnet_gap": ("gap", 224, 13, 1024),
    "alexnet_gmp": ("gmp", 224, 13, 1024),
    "alexnet_star_gap": ("gap", 224, 13, 1024),
    "vgg16_gap": ("gap", 224, 14, 1024),
    "vgg16_gmp": ("gmp", 224, 14, 1024),
    "googlenet_gap": ("gap", 224, 14, 1024),
    "googlenet_gmp": ("gmp", 224, 14, 1024),
    "alexnet": ("fc", 224, 0, None),
    "vgg16": ("fc", 224, 0, None),
    "googlenet": ("gap", 224, 7, 1024),
    "resnet50": ("gap", 224, 7, 2048),
    "efficientnet_lite0": ("gap", 224, 7, 1280),
    "efficientnet_lite1": ("gap", 240, 8, 1280),
    "efficientnet_lite2": ("gap", 260, 9, 1280),
    "simplecnn_gap": ("gap", 128, 16, 256),  # demo nets: 6 classes of the generated data
    "simplecnn_gmp": ("gmp", 128, 16, 256),
}

GOOGLENET_FILE = "googlenet-1378be20.pth"  # basename of torchvision's GoogLeNet IMAGENET1K_V1 URL


# --------------------------------------------------------------------------- registry


def test_registry_contents_and_invariants() -> None:
    assert set(MODELS) == set(EXPECTED)
    assert [s.name for s in list_models()] == list(MODELS)
    for spec in list_models():
        head, size, grid, _ = EXPECTED[spec.name]
        assert (spec.head, spec.input_size, spec.grid) == (head, size, grid), spec.name
        assert spec.paper_name is None or spec.paper_name in PAPER_NAMES
        assert spec.weights_note
        if spec.name.startswith(("efficientnet_lite", "simplecnn")):
            assert spec.mean == spec.std == (0.5, 0.5, 0.5)
        else:
            assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    pairs = [(s.family, s.head) for s in list_models()]
    assert len(pairs) == len(set(pairs)), "(family, head) must identify a model"
    # GAP/GMP twins pair by family.
    assert MODELS["googlenet_gap"].family == MODELS["googlenet_gmp"].family == "googlenet"
    assert MODELS["vgg16_gap"].family == MODELS["vgg16_gmp"].family == "vgg16"
    assert MODELS["alexnet_gap"].family == MODELS["alexnet_gmp"].family == "alexnet"
    paper = {s.paper_name: s.name for s in list_models() if s.paper_name}
    assert paper == {
        "AlexNet-GAP": "alexnet_gap", "AlexNet*-GAP": "alexnet_star_gap", "VGGnet-GAP": "vgg16_gap",
        "GoogLeNet-GAP": "googlenet_gap", "GoogLeNet-GMP": "googlenet_gmp",
        "AlexNet": "alexnet", "VGGnet": "vgg16", "GoogLeNet": "googlenet",
    }  # fmt: skip


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError) as ei:
        build_model("alexnet_gapp", pretrained=False)
    assert isinstance(ei.value, UnknownModelError)
    msg = str(ei.value)
    assert "alexnet_gapp" in msg and "alexnet_gap" in msg and "efficientnet_lite2" in msg


def test_weights_with_random_init_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_model("alexnet_gap", tmp_path / "w.pth", pretrained=False)


# --------------------------------------------------------------------------- shapes + identity


@pytest.mark.parametrize("name", list(EXPECTED))
def test_forward_grid_and_cam_identity(name: str) -> None:
    head, size, grid, k = EXPECTED[name]
    torch.manual_seed(0)
    model, info = build_model(name, pretrained=False)
    assert isinstance(model, BenchModel) and not model.training
    assert info == sources.WeightsInfo("random-init", None, None)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        if head != "fc":  # a bias of O(1) so that a CAM wrongly including it is caught
            model.classifier()[1].normal_()
        logits, feats = model(x)
    n_classes = 6 if name.startswith("simplecnn") else 1000
    assert logits.shape == (1, n_classes)
    if head == "fc":
        assert feats is None
        with pytest.raises(CamNotApplicable):
            model.classifier()
    else:
        assert feats is not None and feats.shape == (1, k, grid, grid)
        w, b = model.classifier()
        assert w.shape == (n_classes, k) and b.shape == (n_classes,)
        with torch.no_grad():
            classes = torch.tensor([[0, 4, n_classes - 1]])
            cams = class_activation_maps(feats, w, classes)
            assert cams.shape == (1, 3, grid, grid)
            # the CAM formula, written out independently: M_c = sum_k W[c, k] F_k
            for j, c in enumerate(classes[0].tolist()):
                by_hand = (w[c].double()[:, None, None] * feats[0].double()).sum(0)  # float64: exact enough
                bound = sum_bound(k, (w[c].abs()[:, None, None] * feats[0].abs()).double().sum(0))
                assert ((cams[0, j].double() - by_hand).abs() <= bound).all()
            wd, bd, fd = w.double(), b.double(), feats.double()
            if head == "gap":
                cams_all = class_activation_maps(feats, w, torch.arange(n_classes)[None])
                exact = fd.mean((2, 3)) @ wd.T + bd
                bound = linear_bound(feats.abs().mean((2, 3)), w, b, pooled_terms=grid * grid + 1)
                assert ((cams_all.mean((2, 3)).double() + bd - exact).abs() <= bound).all()
            else:  # gmp: logits == W . max_xy(F) + b
                exact = fd.amax((2, 3)) @ wd.T + bd
                bound = linear_bound(feats.abs().amax((2, 3)), w, b)
            assert ((logits.double() - exact).abs() <= bound).all()
    if not name.endswith(("_gap", "_gmp")):  # (simplecnn_* have no wrapped library model)
        # published nets: same logits as the wrapped library model's own forward
        # (on a small input: the graph is what is compared, not the grid). Both run the same
        # layers on the same input up to the features; only the head's float32 order may differ.
        xs = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            mine, f = model(xs)
            theirs = model.weights_module()(xs)
        if f is None:  # fc heads: forward_cam *is* the library forward
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        else:
            w, b = model.classifier()
            bound = linear_bound(f.abs().mean((2, 3)), w, b, pooled_terms=f.shape[2] * f.shape[3] + 1)
            assert ((mine.double() - theirs.double()).abs() <= 2 * bound).all()


def test_googlenet_input_transform_maps_imagenet_to_half_normalization() -> None:
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    raw = torch.tensor([0.5, 1.0, 0.0, 0.25])[None, None, None, :].expand(1, 3, 1, 4)
    out = imagenet_to_half_normalization((raw - mean) / std)
    expected = torch.tensor([0.0, 1.0, -1.0, -0.5])[None, None, None, :].expand(1, 3, 1, 4)
    # 4 float32 roundings ((raw - mean) / std in the test, then * and + in the function), every
    # intermediate at most |0 - 0.406| / 0.225 < 2.65 in magnitude
    torch.testing.assert_close(out, expected, rtol=0, atol=4 * EPS32 * 2.65)


# --------------------------------------------------------------------------- packaged weights


def test_efficientnet_lite0_packaged_weights_and_identity() -> None:
    model, info = build_model("efficientnet_lite0")
    assert info.source == "package"
    assert info.path is not None and Path(info.path).name == "efficientnet-lite0-57934424.pth"
    assert info.sha256 == hashlib.sha256(Path(info.path).read_bytes()).hexdigest()
    assert info.sha256.startswith("57934424")  # torch hub naming: the file's hash prefix
    torch.manual_seed(1)
    x = (torch.rand(1, 3, 224, 224) - 0.5) / 0.5
    with torch.no_grad():
        logits, feats = model(x)
        w, b = model.classifier()
        cams = class_activation_maps(feats, w, torch.arange(1000)[None])
        exact = feats.double().mean((2, 3)) @ w.double().T + b.double()
        bound = linear_bound(feats.abs().mean((2, 3)), w, b, pooled_terms=7 * 7 + 1)
        assert ((cams.mean((2, 3)).double() + b.double() - exact).abs() <= bound).all()
        assert ((logits.double() - exact).abs() <= bound).all()
        # the wrapped package's forward: same layers, its own head order
        assert ((logits.double() - model.weights_module()(x).double()).abs() <= 2 * bound).all()

    # and the weights classify a real photograph (a cat) with mean = std = 0.5
    skd = pytest.importorskip("skimage.data")
    img = torch.from_numpy(skd.chelsea()).permute(2, 0, 1)[None].float() / 255.0
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        top1 = int(model((img - 0.5) / 0.5)[0].argmax())
    assert top1 in {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_other_lite_packages_load_strictly(name: str) -> None:
    _, info = build_model(name)
    assert info.source == "package" and info.path and info.sha256
    assert Path(info.path).name.startswith(name.replace("_", "-"))


# --------------------------------------------------------------------------- explicit files


@pytest.fixture(scope="module")
def alexnet_gap_pair() -> tuple[BenchModel, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    model, _ = build_model("alexnet_gap", pretrained=False)
    return model, {k: v.clone() for k, v in model.weights_module().state_dict().items()}


def test_explicit_file_roundtrip_wrapped(tmp_path: Path, alexnet_gap_pair) -> None:
    src, sd = alexnet_gap_pair
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": sd, "epoch": 3, "arch": "alexnet_gap"}, path)
    model, info = build_model("alexnet_gap", weights=path)
    assert info == sources.WeightsInfo(
        "file", str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest()
    )
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], src(x)[0], rtol=0, atol=0)


def test_explicit_file_benchmodel_layout_with_ddp_prefix(tmp_path: Path, alexnet_gap_pair) -> None:
    src, _ = alexnet_gap_pair
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    model, info = build_model("alexnet_gap", weights=str(path))
    assert info.source == "file"
    torch.testing.assert_close(model.net.fc.weight, src.net.fc.weight, rtol=0, atol=0)


def test_mismatched_keys_name_the_file_and_keys(tmp_path: Path, alexnet_gap_pair) -> None:
    _, sd = alexnet_gap_pair
    bad = dict(sd)
    del bad["fc.bias"]
    bad["bogus_head.weight"] = torch.zeros(3)
    path = tmp_path / "mismatch.pth"
    torch.save(bad, path)
    with pytest.raises(WeightsMismatch) as ei:
        build_model("alexnet_gap", weights=path)
    msg = str(ei.value)
    assert str(path.resolve()) in msg and "fc.bias" in msg and "bogus_head.weight" in msg
    assert "missing" in msg and "unexpected" in msg

    shaped = dict(sd)
    shaped["fc.weight"] = torch.zeros(10, 1024)
    torch.save(shaped, path)
    with pytest.raises(WeightsMismatch, match=r"fc\.weight: file \(10, 1024\) vs model \(1000, 1024\)"):
        build_model("alexnet_gap", weights=path)


def test_missing_and_non_state_dict_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsNotFound) as ei:
        build_model("alexnet_gap", weights=missing)
    assert str(missing) in str(ei.value) and "alexnet_gap" in str(ei.value)
    junk = tmp_path / "list.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(WeightsError, match="not a state dict"):
        build_model("alexnet_gap", weights=junk)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(WeightsError, match=str(text.resolve())):
        build_model("alexnet_gap", weights=text)


class _Payload:
    """Unpickling this calls ``open(marker, 'w')``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def test_code_executing_pickle_is_refused(tmp_path: Path, alexnet_gap_pair) -> None:
    _, sd = alexnet_gap_pair
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": sd, "extra": _Payload(marker)}, evil)
    assert not marker.exists()
    with pytest.raises(UnsafeWeightsFile) as ei:
        build_model("alexnet_gap", weights=evil)
    assert str(evil.resolve()) in str(ei.value)
    assert not marker.exists()

    # control: the payload is live, a full unpickle would have run it
    marker2 = tmp_path / "pwned2"
    control = tmp_path / "control.pth"
    torch.save({"extra": _Payload(marker2)}, control)
    torch.load(control, weights_only=False)
    assert marker2.exists()


# --------------------------------------------------------------------------- missing weights


def test_surgery_net_without_weights_explains_fine_tuning(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound) as ei:
        build_model("vgg16_gap")
    msg = str(ei.value)
    assert "vgg16_gap" in msg and "bench train" in msg and "--weights FILE" in msg
    assert "VGG16_Weights.IMAGENET1K_V1" in msg
    assert len(ei.value.tried) == 3


def _online(host: str = "download.pytorch.org") -> bool:
    try:
        with socket.create_connection((host, 443), timeout=2):
            return True
    except OSError:
        return False


def test_missing_torchvision_weights_name_paths_tried(tmp_path: Path, monkeypatch) -> None:
    if _online():
        pytest.skip("network reachable: this test checks the offline failure path")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 3.0)
    url = tvm.ResNet50_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints" / os.path.basename(url)
    with pytest.raises(WeightsNotFound) as ei:
        build_model("resnet50")
    msg = str(ei.value)
    assert "resnet50" in msg and str(cache) in msg and url in msg
    assert "--weights FILE" in msg and "TORCH_HOME" in msg
    assert len(ei.value.tried) == 2
    assert not cache.exists() and list(cache.parent.iterdir()) == []  # no partial file left

    with pytest.raises(WeightsNotFound, match="googlenet_gap"):
        build_backbone_init("googlenet_gap")


# --------------------------------------------------------------------------- torchvision cache


@pytest.fixture(scope="module")
def googlenet_cache(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], tvm.GoogLeNet]:
    """A torch hub dir holding a GoogLeNet file laid out like torchvision's (aux heads incl.)."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(5)
    ref = tvm.GoogLeNet(aux_logits=True, transform_input=True, init_weights=True).eval()
    sd = ref.state_dict()
    assert any(k.startswith("aux1.") for k in sd)
    ckpt_dir = home / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(sd, ckpt_dir / GOOGLENET_FILE)
    return home, sd, ref


def test_torchvision_cache_file_is_used(googlenet_cache, monkeypatch) -> None:
    home, sd, ref = googlenet_cache
    monkeypatch.setenv("TORCH_HOME", str(home))
    path = home / "hub" / "checkpoints" / GOOGLENET_FILE
    model, info = build_model("googlenet")
    assert info == sources.WeightsInfo(
        "torchvision-cache", str(path), hashlib.sha256(path.read_bytes()).hexdigest()
    )
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # the same layers and head, in the same order: bit for bit
        torch.testing.assert_close(model(x)[0], ref(x), rtol=0, atol=0)


def test_backbone_init_reads_torchvision_backbone(googlenet_cache, monkeypatch) -> None:
    home, sd, ref = googlenet_cache
    monkeypatch.setenv("TORCH_HOME", str(home))
    model, info = build_backbone_init("googlenet_gmp")
    assert info.source == "torchvision-cache" and info.path.endswith(GOOGLENET_FILE)
    own = model.net.backbone.state_dict()
    assert set(own) == {k for k in sd if k.split(".")[0] in dict(model.net.backbone.named_children())}
    for k, v in own.items():
        torch.testing.assert_close(v, sd[k], rtol=0, atol=0)
    # the backbone sees what torchvision's inception4e sees (input transform included)
    seen: list[torch.Tensor] = []
    handle = ref.inception4e.register_forward_hook(lambda m, i, o: seen.append(o))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # the same arithmetic in the same order (see the function): bit for bit
        ref(x)
        mine = model.net.backbone(imagenet_to_half_normalization(x))
    handle.remove()
    torch.testing.assert_close(mine, seen[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="googlenet_gap"):
        build_backbone_init("googlenet")


def test_corrupt_cache_file_names_it_and_suggests_deleting(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints" / os.path.basename(tvm.AlexNet_Weights.IMAGENET1K_V1.url)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError) as ei:
        build_model("alexnet")
    assert str(cache) in str(ei.value) and "delete" in str(ei.value)
