"""bench.run.box_pool and the engine's GPU-path plumbing, exercised on the CPU: a process pool for
boxes and the device-decode data path give records identical to the default CPU run."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from bench.run.box_pool import box_pool_kind, make_box_pool, submit_job


def _sum_and_device(t: torch.Tensor, scale: float = 1.0) -> tuple[float, str]:
    return float(t.sum()) * scale, t.device.type


def test_box_pool_kind() -> None:
    assert box_pool_kind("cpu", None) == ("inline", 0)
    assert box_pool_kind("cpu", 3) == ("thread", 3)
    assert box_pool_kind("cuda", 0) == ("inline", 0)
    assert box_pool_kind("cuda:0", 4) == ("process", 4)
    kind, n = box_pool_kind("cuda", None)
    assert kind == "process" and n >= 1
    with pytest.raises(ValueError):
        box_pool_kind("cpu", -1)


def test_submit_job_inline_thread_and_process_agree() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    job = partial(_sum_and_device, t, scale=2.0)
    assert submit_job(None, job) == (132.0, "cpu")
    for kind in ("thread", "process"):
        pool = make_box_pool(kind, 2)
        try:
            assert submit_job(pool, job).result() == (132.0, "cpu")
        finally:
            pool.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("efficientnet_lite_pytorch")
    from bench.data.classes import load_wnids
    from bench.data.fixtures import generated_samples, write_ilsvrc_layout

    wnids = load_wnids()
    samples = generated_samples(10, seed=3, wnids=[wnids[i] for i in (1, 400, 800)])
    return write_ilsvrc_layout(tmp_path_factory.mktemp("pool_data"), samples, layouts=("csv",))["csv"]


def _run(data: Path, out: Path) -> bytes:
    from bench.cli import main

    flags = ["--batch-size", "4", "--workers", "0", "--no-progress", "--shard-size", "4", "--model", "efficientnet_lite0"]
    assert main(["run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(out), *flags]) == 0
    return (out / "ilsvrc_loc" / "efficientnet_lite0" / "records.csv.gz").read_bytes()


@pytest.mark.slow
def test_engine_with_a_process_box_pool_and_device_decode_path_gives_the_same_records(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import bench.run.engine as engine

    reference = _run(data, tmp_path / "cpu")
    # What a CUDA run does, on the CPU: box extraction in 2 worker processes ...
    monkeypatch.setattr(engine, "box_pool_kind", lambda device, workers: ("process", 2))
    assert _run(data, tmp_path / "process") == reference
    # ... and the images read as bytes by the loader, decoded and resized by decode_batch.
    monkeypatch.setattr(engine.RunConfig, "resolved_decode", lambda self: "cuda")
    assert _run(data, tmp_path / "decode") == reference
    manifest = json.loads((tmp_path / "decode" / "ilsvrc_loc" / "efficientnet_lite0" / "manifest.json").read_text())
    assert manifest["settings"]["decode"] == "cuda" and manifest["settings"]["box_pool"] == "process"
