"""Library methods (grad-cam:NAME, torchcam:NAME): the harness's maps are the library's maps.

Every method the harness offers (the table of docs/methods.md) is compared with a direct call of the
library on the same network, layer, input and targets. The direct call uses the plain network
(``model.net``: ``x -> logits``) with ``net.block4`` as the target layer, whose output *is* the
feature map the harness's default (the native Grad-CAM layer, exposed through ``tap``) hooks, so the
two calls share no harness code. Everything runs in float64 (``model.double()``); pytorch-grad-cam
returns float32 (its ``scale_cam_image`` casts), torchcam keeps float64.

A tiny SimpleCNN (channels 4, 4, 8, 8; 32 x 32 input) keeps the many-pass methods (ScoreCAM:
K + 1 = 9 forwards per image and class; SSCAM: 35 K + 1) fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("torchcam")

from bench.core.library_methods import (  # noqa: E402
    MANY_PASSES,
    METHOD_NAMES,
    RANDOM_METHODS,
    SEED,
    LibraryMethodError,
    check_method,
    library_maps,
    method_info,
)
from bench.core.maps import produce_maps  # noqa: E402
from bench.models import BenchModel, get_spec  # noqa: E402
from bench.models.simplecnn import SimpleCNN  # noqa: E402
from tests.tolerances import EPS32  # noqa: E402

ALL = [f"{lib}:{name}" for lib, names in METHOD_NAMES.items() for name in names]
S = 32


def _tiny_model() -> BenchModel:
    torch.manual_seed(3)
    net = SimpleCNN("gap", num_classes=6, channels=(4, 4, 8, 8))
    for m in net.modules():  # non-trivial BN statistics, so that eval mode is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return BenchModel(get_spec("simplecnn_gap"), net).double().eval()


@pytest.fixture(scope="module")
def setup() -> tuple[BenchModel, torch.Tensor, torch.Tensor]:
    model = _tiny_model()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, S, S, generator=g, dtype=torch.float64)
    classes = torch.tensor([[0, 4], [5, 5]])
    return model, x, classes


def _seed() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)


def _direct(method: str, model: BenchModel, x: torch.Tensor, classes: torch.Tensor, layer_name: str = "block4") -> torch.Tensor:
    """The library called as its README shows, on ``model.net`` with target layer ``block4``; ``(B, k, h, w)``."""
    lib, name = method.split(":")
    net, layer = model.net, getattr(model.net, layer_name)
    out = []
    if lib == "grad-cam":
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with getattr(pytorch_grad_cam, name)(model=net, target_layers=[layer]) as cam:
            for j in range(classes.shape[1]):
                if method in RANDOM_METHODS:
                    _seed()
                maps = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes[:, j]])
                out.append(torch.from_numpy(maps))
        return torch.stack(out, dim=1)
    import torchcam.methods

    cls = getattr(torchcam.methods, name)
    kwargs = {"fc_layer": net.fc} if name == "CAM" else {}
    if method in RANDOM_METHODS:
        _seed()
    with cls(net, target_layer=layer, input_shape=(3, S, S), **kwargs) as extractor:
        scores = net(x.clone())
        for j in range(classes.shape[1]):
            gradient = name in ("GradCAM", "GradCAMpp", "XGradCAM", "LayerCAM")
            extra = {"retain_graph": True} if gradient else {}
            out.append(extractor(classes[:, j].tolist(), scores, **extra)[0].detach())
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("method", ALL)
def test_harness_maps_equal_a_direct_library_call(method: str, setup) -> None:
    """Same network, layer, input and targets: the maps are the library's, value for value.

    Many-pass methods are called one image at a time by the harness (memory); the direct call does
    the same, so the two runs do the same arithmetic and must agree exactly.
    """
    model, x, classes = setup
    layer = None  # the default: block4's output, the feature map
    if method in ("torchcam:SSCAM", "torchcam:ISCAM"):  # 35 K + 1 / 10 K + 1 forwards per map: one image,
        x, classes, layer = x[:1], classes[:1, :1], "block2"  # one class, a 4-channel layer (8 x 8)
    model.zero_grad(set_to_none=True)
    got = library_maps(model, x, classes, method, layer=layer, progress=False)
    assert all(p.grad is None for p in model.parameters())  # the libraries' backward(): .grad left as found
    if method in MANY_PASSES:
        want = torch.cat([_direct(method, model, x[i : i + 1], classes[i : i + 1], layer or "block4") for i in range(x.shape[0])])
    else:
        want = _direct(method, model, x, classes)
    assert got.shape == want.shape
    expected_side = S if method.startswith("grad-cam:") else S // (4 if layer == "block2" else 8)
    assert got.shape == (*classes.shape, expected_side, expected_side)
    assert got.dtype == (torch.float32 if method.startswith("grad-cam:") else torch.float64)
    assert torch.equal(got, want), f"{method}: max |diff| {float((got - want).abs().max())}"
    assert float(got.max()) > 0.5  # min-max normalised by the library: a real map, not zeros


#: Not batch-independent: their random numbers are drawn for the whole library call (RandomCAM's
#: weights, SmoothGradCAMpp's and SSCAM's noise), so an image's map depends on its batch-mates.
NOT_BATCH_INDEPENDENT = sorted(RANDOM_METHODS)


@pytest.mark.parametrize("method", [m for m in ALL if m not in RANDOM_METHODS and m not in MANY_PASSES])
def test_batch_independence(method: str, setup) -> None:
    """An image's maps do not depend on the other images of its batch (float64 network).

    Bound: the network's float64 sums differ between batch sizes by at most ~n * eps64 relative
    (n < 10^4 terms: < 1e-11 of the map's range); pytorch-grad-cam then rounds to float32 (one
    rounding of values in [0, 1]: <= EPS32 / 2 apart) and resizes with a convex bilinear
    combination in float32 (<= 2 more roundings): 4 * EPS32 covers it; torchcam stays in float64
    (1e-9 of the unit range covers the 1e-11 with the normalisation's division by a range >= 1e-2).
    """
    model, x, classes = setup
    batch = library_maps(model, x, classes, method, progress=False)
    alone = torch.cat([library_maps(model, x[i : i + 1], classes[i : i + 1], method, progress=False) for i in range(2)])
    bound = 4 * EPS32 if method.startswith("grad-cam:") else 1e-9
    assert float((batch.double() - alone.double()).abs().max()) <= bound


def test_random_methods_are_seeded_and_recorded(setup) -> None:
    """Random methods give the same maps twice (seed :data:`SEED`), and the manifest section says so."""
    model, x, classes = setup
    for method in ("grad-cam:RandomCAM", "torchcam:SmoothGradCAMpp"):
        a = library_maps(model, x, classes, method, progress=False)
        b = library_maps(model, x, classes, method, progress=False)
        assert torch.equal(a, b)
        info = method_info(method)
        assert info["seed"] == SEED and info["batch_independent"] is False
    assert method_info("grad-cam:GradCAM")["seed"] is None


def test_produce_maps_dispatches_and_returns_float32(setup) -> None:
    model, x, classes = setup
    got = produce_maps(model, x, classes, "torchcam:GradCAM")
    assert got.dtype == torch.float32
    assert torch.equal(got, library_maps(model, x, classes, "torchcam:GradCAM").float())


def test_gradcam_default_layer_matches_native_gradcam(setup) -> None:
    """torchcam's GradCAM on the default layer is the native Grad-CAM, min-max normalised (same layer,
    same gradients): a check that the default layer is the native one."""
    model, x, classes = setup
    lib = library_maps(model, x, classes, "torchcam:GradCAM")
    native = produce_maps(model, x, classes, "gradcam").double()
    flat = native.flatten(2)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    expected = ((flat - lo) / (hi - lo + 1e-8)).reshape(native.shape)
    assert float((lib - expected).abs().max()) <= 1e-5  # native maps are float32: 8 * EPS32 of the range, rounded up


def test_explicit_layer(setup) -> None:
    """``layer`` picks a module (``'net.'`` optional): block3's 8 x 8 grid for torchcam."""
    model, x, classes = setup
    got = library_maps(model, x, classes, "torchcam:GradCAM", layer="block3")
    assert got.shape == (2, 2, S // 8, S // 8)
    got3 = library_maps(model, x, classes, "torchcam:GradCAM", layer="net.block2")
    assert got3.shape == (2, 2, S // 4, S // 4)


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(LibraryMethodError) as info:
        check_method("grad-cam:GradKAM")
    message = str(info.value)
    assert "\n" not in message and "grad-cam:ScoreCAM" in message and "GradKAM" in message
    with pytest.raises(LibraryMethodError, match="torchcam:SSCAM"):
        check_method("torchcam:Nope")


def test_missing_extra_is_one_line_before_any_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_val: Path, capsys) -> None:
    from bench.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytorch_grad_cam" else real(name, *a))
    out = tmp_path / "out"
    code = main(["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(tiny_val), "--method", "grad-cam:GradCAM", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "pip install 'wsol-bench[gradcam]'" in err
    assert not out.exists()


def test_run_records_library_in_manifest(tmp_path: Path, tiny_val: Path) -> None:
    """A `bench run` with a library method: manifest section, identity, folder name; maps as produce_maps."""
    from bench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(tiny_val), "--method", "torchcam:GradCAMpp",
                 "--limit", "4", "--out", str(out), "--no-progress", "--workers", "0"]) == 0  # fmt: skip
    run = out / "demo" / "simplecnn_gap-torchcam-GradCAMpp-limit4"  # --limit keys the folder
    manifest = json.loads((run / "manifest.json").read_text())
    from importlib.metadata import version

    assert manifest["method"]["library"] == "torchcam" and manifest["method"]["class"] == "GradCAMpp"
    assert manifest["method"]["version"] == version("torchcam")
    assert manifest["identity"]["method_library"] == version("torchcam")
    assert manifest["protocol"]["cam"]["method"] == "torchcam:GradCAMpp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["scored"] == 4 and summary["top1_loc_err"] is not None


def test_wsol_suite_computes_only_the_gt_map(tmp_path: Path, tiny_val: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wsol suites need only the GT class's map: a library method is asked for one class per image."""
    import bench.core.library_methods as lm
    from bench.cli import main

    seen: list[tuple[int, ...]] = []
    real = lm.library_maps

    def spy(model, images, classes, *a, **k):
        seen.append(tuple(classes.shape))
        return real(model, images, classes, *a, **k)

    monkeypatch.setattr(lm, "library_maps", spy)
    out = tmp_path / "out"
    assert main(["run", "--suite", "wsol_ilsvrc", "--model", "simplecnn_gap", "--data", str(tiny_val), "--method", "grad-cam:GradCAM",
                 "--limit", "4", "--out", str(out), "--no-progress", "--workers", "0", "--step", "0.05"]) == 0  # fmt: skip
    assert seen and all(shape[1] == 1 for shape in seen)
    summary = json.loads((out / "wsol_ilsvrc" / "simplecnn_gap-grad-cam-GradCAM-limit4" / "summary.json").read_text())
    assert summary["gt_class_maps_only"] is True and summary["top1_loc_err"] is None and summary["gt_known_loc_err"] is not None
