"""An image's maps, boxes and record do not depend on the other images of its batch.

Checked for CAM and every gradient method, on a registry model (the demo GAP and GMP nets) and on
user models (a traced GMP net, the tiny ViT with ``--reshape vit``): a cross-image leak (batch
statistics, a batch-wide normalisation, gradients summed into the wrong image, as in
pytorch-grad-cam#584) changes a map by O(1), far above the tolerance.

Tolerance: the maps are computed in float64, batched and one image at a time. Both are the same
exact function of the image; the only difference allowed is rounding in a different summation
order (batched kernels block differently), bounded by ``2 L eps64 S``: ``L`` the number of terms
summed along the network (the sum of every conv/linear fan-in, twice for gradient methods: forward
and backward), ``S`` the largest map magnitude. Records are compared exactly (float32, the
engine's batch size 1 vs 7 on the demo data).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.cli import main
from bench.core.maps import produce_maps
from bench.data.synthetic import SynthConfig, generate, val_root
from bench.models import build_model
from bench.models.user import wrap_module
from tests import user_models

METHODS = ("cam", "gradcam", "gradcampp", "backprop")


def _fan_in_sum(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += m.in_features
        elif isinstance(m, nn.MultiheadAttention):
            total += 4 * m.embed_dim
    return total


def _models() -> list[tuple[str, nn.Module, int]]:
    torch.manual_seed(0)
    gap, _ = build_model("simplecnn_gap")
    gmp, _ = build_model("simplecnn_gmp")
    traced = wrap_module(user_models.FunctionalGMP(), reference="gmp", input_size=24)
    vit = wrap_module(user_models.TinyViT(), reference="vit", reshape="vit", input_size=32)
    return [("simplecnn_gap", gap, 128), ("simplecnn_gmp", gmp, 128), ("traced_gmp", traced, 24), ("tiny_vit", vit, 32)]


@pytest.mark.parametrize("method", METHODS)
def test_maps_do_not_depend_on_the_batch(method: str) -> None:
    for name, model, size in _models():
        model = model.double().eval()
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(5, 3, size, size, generator=gen, dtype=torch.float64)
        x[3] *= 40.0  # one image far off the others' scale: a batch-wide normalisation would show
        classes = torch.randint(0, 6, (5, 3), generator=gen)
        with torch.no_grad():
            features = model(x)[1] if method == "cam" else None
        batched = produce_maps(model, x, classes, method, features=features)
        for i in range(5):
            xi = x[i : i + 1]
            with torch.no_grad():
                fi = model(xi)[1] if method == "cam" else None
            single = produce_maps(model, xi, classes[i : i + 1], method, features=fi)
            terms = _fan_in_sum(model) * (1 if method == "cam" else 2)
            scale = float(single.abs().max())
            tol = 2 * terms * torch.finfo(torch.float64).eps * max(scale, 1e-300)
            diff = float((batched[i : i + 1] - single).abs().max())
            assert diff <= tol, f"{name} {method}: image {i} differs by {diff:.3g} (> {tol:.3g}) with other images in its batch"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = generate(tmp_path_factory.mktemp("synth"), SynthConfig(seed=7, classes=6, train_per_class=0, val_per_class=3))
    return val_root(out)


def _records(run: Path) -> str:
    with gzip.open(run / "records.csv.gz", "rt") as fh:
        return fh.read()


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", ["simplecnn_gap", "tests.user_models:simplecnn_gap"])
def test_records_do_not_depend_on_the_batch(data: Path, tmp_path: Path, method: str, model: str) -> None:
    texts = []
    for batch in (1, 7):  # 18 images: batches of 7, 7, 4 vs one at a time
        out = tmp_path / f"b{batch}"
        args = ["run", "--suite", "ilsvrc_loc", "--model", model, "--method", method, "--data", str(data), "--out", str(out),
                "--batch-size", str(batch), "--workers", "0", "--no-progress"]  # fmt: skip
        assert main(args) == 0
        (run,) = [p for p in (out / "ilsvrc_loc").iterdir() if p.is_dir() and p.name != "tables"]
        texts.append(_records(run))
    assert texts[0] == texts[1]
