"""User models by reference: factories, files, nn.Modules, timm/torchvision names, entry points.

The acceptance check: the demo GAP net built by a factory outside the registry (tests/user_models.py)
gives records byte-identical to the registry's ``simplecnn_gap`` on the same data, through the CLI
(``module:factory`` and ``file.py:factory``, with the factory's weights or ``--weights``) and through
``bench.evaluate``. The other tests check the traced GAP/GMP pair against the modules it must find,
the CAM identity bound, preprocessing and the errors.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bench
from bench.cli import main
from bench.core.maps import produce_maps
from bench.models.resolve import ENTRY_POINT_GROUP, ModelOptions, entry_point_models, resolve_model
from bench.models.simplecnn import packaged_checkpoint_path
from bench.models.user import ModelAdapterError, resolve_preprocessing, tokens_to_grid, wrap_module
from tests import user_models

COMMON = ["--workers", "0", "--batch-size", "5", "--no-progress"]
HERE = Path(user_models.__file__)


@pytest.fixture(scope="module")
def data(tiny_val: Path) -> Path:
    return tiny_val


@pytest.fixture(scope="module")
def registry_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("registry")
    assert main(["run", "--suite", "ilsvrc_loc", "--model", "simplecnn_gap", "--data", str(data), "--out", str(out), *COMMON]) == 0
    return out / "ilsvrc_loc" / "simplecnn_gap"


def _text(run: Path) -> str:
    with gzip.open(run / "records.csv.gz", "rt") as fh:
        return fh.read()


@pytest.mark.parametrize(
    ("model", "weights", "folder"),
    [
        ("tests.user_models:simplecnn_gap", None, "tests.user_models.simplecnn_gap"),
        (f"{HERE}:simplecnn_gap", None, "user_models.simplecnn_gap"),
        ("tests.user_models:simplecnn_gap_untrained", "packaged", "tests.user_models.simplecnn_gap_untrained"),
    ],
)
def test_factory_model_gives_the_registry_models_records(data: Path, registry_run: Path, tmp_path: Path, model: str, weights: str | None, folder: str) -> None:
    extra = ["--weights", str(packaged_checkpoint_path("simplecnn_gap"))] if weights else []
    assert main(["run", "--suite", "ilsvrc_loc", "--model", model, *extra, "--data", str(data), "--out", str(tmp_path), *COMMON]) == 0
    run = tmp_path / "ilsvrc_loc" / folder
    assert _text(run) == _text(registry_run)
    mine, theirs = json.loads((run / "summary.json").read_text()), json.loads((registry_run / "summary.json").read_text())
    assert {k: v for k, v in mine.items() if k != "model"} == {k: v for k, v in theirs.items() if k != "model"}
    manifest = json.loads((run / "manifest.json").read_text())["model"]
    assert manifest["reference"] == model and manifest["head"] == "gap" and manifest["grid"] == 16
    assert manifest["classifier"] == "fc" and manifest["detected"] == "traced"
    assert manifest["preprocessing"]["sources"] == {"input_size": "pretrained_cfg", "mean": "pretrained_cfg", "std": "pretrained_cfg"}
    assert manifest["weights_source"] == ("file" if weights else "factory")


def test_evaluate_accepts_modules_and_strings(data: Path, registry_run: Path) -> None:
    want = bench.load_run(registry_run).records
    for model in (user_models.simplecnn_gap(), "tests.user_models:simplecnn_gap"):
        # the registry run's batch size: a convolution's float32 summation order may depend on the batch
        # size (oneDNN picks kernels per shape), which moves printed scores at their 6th decimal on some CPUs
        run = bench.evaluate(model, data, progress=False, batch_size=5, workers=0)
        assert run.records.equals(want)
        assert run.summary["top1_loc_err"] == bench.load_run(registry_run).summary["top1_loc_err"]


@pytest.mark.parametrize(
    ("factory", "head", "classifier"),
    [(user_models.FunctionalGMP, "gmp", "head"), (user_models.ModuleGAP, "gap", "fc"), (user_models.module_gmp, "gmp", "fc")],
)
def test_traced_pair_is_the_pooling_input_and_the_last_linear(factory: type[nn.Module], head: str, classifier: str) -> None:
    torch.manual_seed(0)
    net = factory()
    model = wrap_module(net, reference="t", input_size=20)
    assert (model.spec.head, model.classifier_name, model.detected) == (head, classifier, "traced")
    x = torch.randn(3, 3, 20, 20)
    with torch.no_grad():
        logits, feats = model(x)
        body = net.body if hasattr(net, "body") else net.features
        assert torch.equal(feats, body(x))
        assert torch.equal(logits, net(x))
        w, b = model.classifier()
        assert w is getattr(net, classifier).weight and b is getattr(net, classifier).bias
        pooled = feats.double().amax((2, 3)) if head == "gmp" else feats.double().mean((2, 3))
        torch.testing.assert_close(pooled @ w.double().T + b.double(), logits.double(), rtol=0, atol=1e-5)


def test_explicit_layer_and_classifier_match_the_trace() -> None:
    torch.manual_seed(0)
    net = user_models.ModuleGAP()
    traced = wrap_module(net, reference="t", input_size=16)
    named = wrap_module(net, reference="t", input_size=16, layer="features", classifier="net.fc")
    assert named.spec.head == "gap" and named.layer == "features" and named.detected == "layer"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(traced(x)[1], named(x)[1])


def test_no_pair_is_a_clear_error_for_cam_and_fc_for_gradient_methods() -> None:
    net = user_models.NormalizedHead()
    with pytest.raises(ModelAdapterError, match="--layer.*--classifier"):
        wrap_module(net, reference="bn", input_size=16)
    model = wrap_module(net, reference="bn", input_size=16, require_cam=False)
    assert model.spec.head == "fc" and not model.returns_features
    maps = produce_maps(model, torch.randn(2, 3, 16, 16), torch.tensor([[0], [1]]), "gradcam", layer="features")
    assert maps.shape == (2, 1, 16, 16) and torch.isfinite(maps).all()
    with pytest.raises(ModelAdapterError, match="neither the GAP nor the GMP"):
        wrap_module(net, reference="bn", input_size=16, layer="features")


def test_identity_bound_accepts_float_rounding_and_refuses_a_real_deviation() -> None:
    torch.manual_seed(0)
    model = wrap_module(user_models.ModuleGAP(), reference="t", input_size=16)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        logits, feats = model(x)
        model.check_identity(logits, feats)  # exact float32 forward: within the bound
        w, b = model.classifier()
        exact = feats.double().mean((2, 3)) @ w.double().T + b.double()
        model.check_identity(exact.float(), feats)  # float64 identity rounded to float32
        scale = float(exact.abs().max())
        with pytest.raises(ModelAdapterError, match="CAM identity"):
            model.check_identity(logits + 1e-3 * scale, feats)


def test_first_batch_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity is checked again on the first real batch (here a classifier view that stopped matching
    the network after the probe), and only once."""
    torch.manual_seed(0)
    model = wrap_module(user_models.ModuleGAP(), reference="t", input_size=16)
    monkeypatch.setattr(model, "classifier", lambda: (model.net.fc.weight, model.net.fc.bias + 1.0))
    with pytest.raises(ModelAdapterError, match="fails by"):
        with torch.no_grad():
            model(torch.randn(1, 3, 16, 16))
    monkeypatch.undo()
    ok = wrap_module(user_models.ModuleGAP(), reference="t", input_size=16)
    with torch.no_grad():
        ok(torch.randn(2, 3, 16, 16))  # checked, passes
        monkeypatch.setattr(ok, "check_identity", lambda *a: pytest.fail("checked twice"))
        ok(torch.randn(2, 3, 16, 16))


def test_tiny_vit_tokens_fold_into_the_patch_grid() -> None:
    torch.manual_seed(0)
    net = user_models.TinyViT()
    x = torch.randn(3, 3, 32, 32)
    for layer in (None, "norm"):
        model = wrap_module(net, reference="vit", reshape="vit", input_size=32, layer=layer)
        assert (model.spec.head, model.spec.grid) == ("gap", 4)
        store: list[torch.Tensor] = []
        handle = net.norm.register_forward_hook(lambda _m, _i, out: store.append(out))  # runs before the adapter's
        with torch.no_grad():
            got_logits, grid = model(x)
        handle.remove()
        tokens = store[0]  # (3, 1 + 16, 16): class token first, then the 4x4 patches row by row
        for b in range(3):
            for r in range(4):
                for c in range(4):
                    assert torch.equal(grid[b, :, r, c], tokens[b, 1 + 4 * r + c])
        # the folded tokens are rebuilt contiguous, so the 16-token mean and the 16-input linear may sum in
        # another order: |difference| <= 2 eps (16 + 16) |W| @ mean|t| (float32 summation bound, twice)
        with torch.no_grad():
            direct = net.head(tokens[:, 1:].mean(1))
        bound = 2 * torch.finfo(torch.float32).eps * 32 * (tokens[:, 1:].abs().mean(1) @ net.head.weight.detach().abs().T)
        assert ((got_logits - direct).abs() <= bound).all()
        classes = torch.tensor([[0, 1], [2, 3], [4, 5]])
        cam = produce_maps(model, x, classes, "cam", features=grid)
        gradcam = produce_maps(model, x, classes, "gradcam")
        # GAP head: d logit / d grid = W / hw, so Grad-CAM = ReLU(CAM) / 16 (float32 rounding of 16 products)
        torch.testing.assert_close(gradcam, cam.relu() / 16, rtol=0, atol=16 * 4 * torch.finfo(torch.float32).eps * float(cam.abs().max()))
    with pytest.raises(ModelAdapterError, match="neither the GAP nor the GMP"):
        wrap_module(net, reference="vit", reshape="vit", input_size=32, layer="patch_embed")


def test_tokens_to_grid_prefix_rules() -> None:
    t = torch.arange(2 * 18 * 3, dtype=torch.float32).reshape(2, 18, 3)  # 2 prefix tokens + 4x4
    grid = tokens_to_grid(t)
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[1, :, 0, 1], t[1, 3])
    assert tokens_to_grid(t[:, 2:], prefix=0).equal(grid)
    with pytest.raises(ModelAdapterError, match="square"):
        tokens_to_grid(t, prefix=0)


def test_preprocessing_sources() -> None:
    net = nn.Linear(2, 2)
    p = resolve_preprocessing(net)
    assert (p.input_size, p.mean, p.std) == (224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    net.pretrained_cfg = {"input_size": (3, 96, 96), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bicubic"}
    p = resolve_preprocessing(net, std=(1, 1, 1))
    assert (p.input_size, p.mean, p.std, p.interpolation) == (96, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "bicubic")
    assert p.sources == {"input_size": "pretrained_cfg", "mean": "pretrained_cfg", "std": "flag"}
    net.pretrained_cfg = {"input_size": (3, 96, 128)}
    with pytest.raises(ModelAdapterError, match="--input-size"):
        resolve_preprocessing(net)
    assert resolve_preprocessing(net, input_size=64).input_size == 64


def test_torchvision_models_by_name() -> None:
    model, info = resolve_model("torchvision/resnet18", ModelOptions(pretrained=False))
    assert info.source == "random-init" and model.spec.head == "gap" and model.spec.grid == 7
    assert model.classifier_name == "fc" and model.spec.name == "torchvision-resnet18"
    assert model.preprocessing.sources["mean"] == "pretrained_cfg" and model.preprocessing.interpolation == "bilinear"
    with pytest.raises(ModelAdapterError, match="--layer"):  # VGG: AdaptiveAvgPool2d(7) then three linears
        resolve_model("torchvision/vgg11", ModelOptions(pretrained=False))
    vgg, _ = resolve_model("torchvision/vgg11", ModelOptions(pretrained=False, method="gradcam"))
    assert vgg.spec.head == "fc"


def test_timm_models_by_name() -> None:
    pytest.importorskip("timm")
    model, info = resolve_model("timm/resnet18", ModelOptions(pretrained=False))
    assert info.source == "random-init" and model.spec.head == "gap" and model.spec.grid == 7
    assert model.preprocessing.sources["input_size"] == "pretrained_cfg"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits, feats = model(x)
        assert torch.equal(feats, model.net.forward_features(x))


def test_weights_file_for_a_timm_model(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    src = timm.create_model("resnet18", pretrained=False, num_classes=7)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    with pytest.raises(Exception, match="does not fit"):
        resolve_model("timm/resnet18", ModelOptions(weights=path))  # 1000 classes vs the file's 7
    torch.manual_seed(4)
    full = timm.create_model("resnet18", pretrained=False)
    torch.save({"state_dict": full.state_dict()}, path)  # a training checkpoint's wrapper key
    model, info = resolve_model("timm/resnet18", ModelOptions(weights=path))  # offline: no download tried
    assert info.source == "file" and info.path == str(path.resolve()) and len(info.sha256) == 64
    for key, value in full.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value)


def test_entry_points_are_listed_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dist = tmp_path / "wsol_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wsol-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nplugin_gap = tests.user_models:simplecnn_gap\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin_gap" in entry_point_models()
    model, info = resolve_model("plugin_gap")
    assert model.spec.name == "plugin_gap" and model.spec.head == "gap" and info.source == "factory"
    assert main(["list"]) == 0
    assert "plugin_gap" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("tests.no_such_module:f", "cannot import module"),
        ("tests.user_models:nothing", "has no attribute"),
        ("tests.user_models:not_a_module", "not a torch.nn.Module"),
        ("/no/such/file.py:f", "no such file"),
        ("not_a_model", "unknown model"),
    ],
)
def test_bad_model_strings_are_one_line_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, message: str) -> None:
    assert main(["run", "--suite", "ilsvrc_loc", "--model", model, "--data", str(data), "--out", str(tmp_path), *COMMON]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench run: error:") and message in err and "Traceback" not in err


def test_model_from_manifest_rebuilds_a_user_model(data: Path, tmp_path: Path) -> None:
    from bench.models.resolve import model_from_manifest

    ckpt = str(packaged_checkpoint_path("simplecnn_gap"))
    args = ["run", "--suite", "ilsvrc_loc", "--model", "tests.user_models:simplecnn_gap_untrained", "--weights", ckpt,
            "--input-size", "96", "--limit", "2", "--data", str(data), "--out", str(tmp_path), *COMMON]  # fmt: skip
    assert main(args) == 0
    section = json.loads((tmp_path / "ilsvrc_loc" / "tests.user_models.simplecnn_gap_untrained-limit2" / "manifest.json").read_text())["model"]
    assert section["preprocessing"]["input_size"] == 96 and section["preprocessing"]["sources"]["input_size"] == "flag"
    model, info = model_from_manifest(section)
    assert info.sha256 == section["weights_sha256"] and model.spec.input_size == 96
    reference, _ = resolve_model("simplecnn_gap")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x)[1], reference(x)[1])
    with pytest.raises(ModelAdapterError, match="cannot be rebuilt"):
        model_from_manifest({**section, "reference": "<tests.user_models.ModuleGAP>"})


def test_a_run_folder_is_not_resumed_with_other_module_weights(data: Path, tmp_path: Path) -> None:
    """nn.Modules have no weights file: the state dict's digest stands in, so other weights are refused."""
    from bench.run.manifest import RunConflict

    torch.manual_seed(0)
    first = bench.evaluate(user_models.ModuleGAP(), data, out=tmp_path, input_size=32, limit=2, progress=False)
    assert len(first.manifest["model"]["weights_sha256"]) == 64
    torch.manual_seed(1)
    with pytest.raises(RunConflict, match="weights_sha256"):
        bench.evaluate(user_models.ModuleGAP(), data, out=tmp_path, input_size=32, limit=2, progress=False)


def test_module_in_the_current_folder_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `bench` script does not put the current folder on sys.path (python -m does); resolution does."""
    import sys

    (tmp_path / "cwd_factory_mod.py").write_text("from tests.user_models import ModuleGAP\n\ndef build():\n    return ModuleGAP()\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    model, _ = resolve_model("cwd_factory_mod:build", ModelOptions(input_size=16))
    assert model.spec.head == "gap" and model.spec.name == "cwd_factory_mod.build"


@pytest.mark.parametrize("weights", [None, "packaged"])
def test_show_and_report_rebuild_a_user_model_run(data: Path, registry_run: Path, tmp_path: Path, weights: str | None) -> None:
    """No map cache: replay rebuilds the user model from the manifest (reference, weights checked) and
    re-runs it; its maps equal the registry twin's replay."""
    from bench.run.replay import RunReplay

    model = "tests.user_models:simplecnn_gap" if weights is None else "tests.user_models:simplecnn_gap_untrained"
    extra = ["--weights", str(packaged_checkpoint_path("simplecnn_gap"))] if weights else []
    assert main(["run", "--suite", "ilsvrc_loc", "--model", model, *extra, "--data", str(data), "--out", str(tmp_path), *COMMON]) == 0
    run = tmp_path / "ilsvrc_loc" / model.replace(":", ".")
    mine, twin = RunReplay.open(run), RunReplay.open(registry_run)
    assert mine.source == twin.source == "network"
    ids = mine.run_image_ids()[:4]
    for a, b in zip(mine.iter_maps(ids), twin.iter_maps(ids)):
        assert a.classes.tolist() == b.classes.tolist()
        np.testing.assert_array_equal(a.maps, b.maps)
    assert main(["show", str(run), "--worst", "1", "--out", str(tmp_path / "show")]) == 0
    assert len(list((tmp_path / "show").rglob("*.png"))) == 1
    report = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(report), "--gallery", "1"]) == 0
    assert "Cannot recompute" not in report.read_text()


def test_a_user_model_run_resumes_only_with_the_same_setup(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same reference and weights with other preprocessing (here --input-size) would give other
    numbers: the run folder refuses it; the same command again finds the run complete."""
    base = ["run", "--suite", "ilsvrc_loc", "--model", "tests.user_models:simplecnn_gap", "--data", str(data), "--out", str(tmp_path), "--limit", "2", *COMMON]
    assert main(base) == 0
    assert main(base) == 0  # a resume: the identity (model setup included, through JSON) matches
    assert "already complete" in capsys.readouterr().out
    assert main([*base, "--input-size", "96"]) == 2
    assert "model_setup" in capsys.readouterr().err


def test_a_token_model_without_reshape_gets_the_vit_hint() -> None:
    """Issue 19 item 11: no (B, K, h, w) pooling feeds the classifier, but a token mean does: the error
    says --reshape vit (which then works); a CNN without any pooling keeps the generic hint."""
    torch.manual_seed(0)
    with pytest.raises(ModelAdapterError) as err:
        wrap_module(user_models.TinyViT(), reference="vit", input_size=32)
    message = str(err.value)
    assert message.endswith("but the classifier pools a token sequence (B, N, C), as a ViT/DeiT does; pass --reshape vit")
    assert "\n" not in message
    assert wrap_module(user_models.TinyViT(), reference="vit", input_size=32, reshape="vit").spec.head == "gap"

    class Flat(nn.Module):  # conv -> flatten -> linear: no pooling at all, no tokens
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, stride=4), nn.Linear(4 * 8 * 8, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))

    with pytest.raises(ModelAdapterError) as err:
        wrap_module(Flat(), reference="flat", input_size=32)
    assert "--reshape vit" not in str(err.value) and "pass --layer NAME" in str(err.value)


def test_a_factory_that_raises_is_one_line_plus_the_users_frame(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 19 item 14: not a 30-line traceback, but the error and the line of the user's code."""
    factory = tmp_path / "mynet.py"
    factory.write_text("import torch\n\ndef make():\n    w = torch.zeros(2, 3)\n    return w @ w  # shapes do not fit\n")
    assert main(["run", "--suite", "demo", "--model", f"{factory}:make", "--data", str(data), "--out", str(tmp_path / "o"), *COMMON]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"bench run: error: --model {factory}:make: the factory raised RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    assert err[1] == f'  File "{factory}", line 5, in make: return w @ w  # shapes do not fit'
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\nraise ValueError('half-written file')\n")
    assert main(["run", "--suite", "demo", "--model", f"{broken}:make", "--data", str(data), "--out", str(tmp_path / "o"), *COMMON]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bench run: error: --model {broken}: importing the file raised ValueError: half-written file", f'  File "{broken}", line 2, in <module>: raise ValueError(\'half-written file\')']
    assert not (tmp_path / "o").exists()
