"""Speed-and-scale features: CAM cache + rescore, box-extraction threads, torchrun sharding, amp flags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.run.cam_cache import cache_size_bytes, read_cam_shard
from bench.cli import main
from bench.data.classes import load_wnids
from bench.data.fixtures import generated_samples, write_ilsvrc_layout
from bench.run.results import RunDir

pytest.importorskip("efficientnet_lite_pytorch")

N = 9
COMMON = ["--batch-size", "4", "--workers", "0", "--no-progress", "--shard-size", "4", "--model", "efficientnet_lite0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wnids = load_wnids()
    samples = generated_samples(N, seed=11, wnids=[wnids[i] for i in (3, 99, 530)])
    return write_ilsvrc_layout(tmp_path_factory.mktemp("scale"), samples, layouts=("csv",))["csv"]


@pytest.fixture(scope="module")
def cached_runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cached")
    for suite in ("ilsvrc_loc", "ilsvrc_loc_tight_loose"):
        assert main(["run", "--suite", suite, "--data", str(data), "--out", str(out), "--save-cams", *COMMON]) == 0
    return out


def _records(run: Path) -> bytes:
    return (run / "records.csv.gz").read_bytes()


def test_cache_layout(cached_runs: Path) -> None:
    run = RunDir(cached_runs / "ilsvrc_loc" / "efficientnet_lite0")
    shard = read_cam_shard(run, 0)
    assert shard["cams"].dtype == np.float32  # lossless: the maps the run's boxes came from
    assert shard["cams"].shape == (4, 6, 7, 7)  # 4 images, top-5 + GT, Lite0's 7x7 grid
    assert shard["index"].tolist() == [0, 1, 2, 3]
    records = run.read_records()
    assert shard["classes"][:, -1].tolist() == records["label"].iloc[:4].tolist()
    assert cache_size_bytes(run) > 0


def test_rescore_reproduces_a_fresh_run_exactly(cached_runs: Path, tmp_path: Path) -> None:
    source = cached_runs / "ilsvrc_loc" / "efficientnet_lite0"
    # Same protocol: the same records.
    assert main(["rescore", str(source), "--protocol", "ilsvrc_loc", "--out", str(tmp_path / "same"), "--no-progress"]) == 0
    assert _records(tmp_path / "same" / "ilsvrc_loc" / "efficientnet_lite0") == _records(source)
    # Another protocol: the records of a fresh run with that protocol, without the network.
    assert main(["rescore", str(source), "--protocol", "ilsvrc_loc_tight_loose", "--out", str(tmp_path / "tl"), "--no-progress"]) == 0
    fresh = cached_runs / "ilsvrc_loc_tight_loose" / "efficientnet_lite0"
    assert _records(tmp_path / "tl" / "ilsvrc_loc_tight_loose" / "efficientnet_lite0") == _records(fresh)
    a = RunDir(tmp_path / "tl" / "ilsvrc_loc_tight_loose" / "efficientnet_lite0").read_summary()
    b = RunDir(fresh).read_summary()
    assert a == b


def test_rescore_refuses_what_it_cannot_do(cached_runs: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The tight/loose cache holds only the top-3 CAMs: the top-5 protocol cannot be served from it.
    source = cached_runs / "ilsvrc_loc_tight_loose" / "efficientnet_lite0"
    assert main(["rescore", str(source), "--protocol", "ilsvrc_loc", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "top-5" in capsys.readouterr().err
    # A run without a cache.
    out = tmp_path / "nocache"
    assert main(["run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(out), "--limit", "2", *COMMON]) == 0
    assert main(["rescore", str(out / "ilsvrc_loc" / "efficientnet_lite0-limit2"), "--protocol", "ilsvrc_loc_tight_loose", "--no-progress"]) == 2
    assert "--save-cams" in capsys.readouterr().err


def test_box_threads_do_not_change_records(data: Path, tmp_path: Path) -> None:
    runs = {}
    for workers in ("0", "3"):
        out = tmp_path / workers
        assert main(["run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(out), "--box-workers", workers, *COMMON]) == 0
        runs[workers] = _records(out / "ilsvrc_loc" / "efficientnet_lite0")
    assert runs["0"] == runs["3"]


def test_channels_last_and_amp_are_recorded(data: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "cl"
    assert main(["run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(out), "--limit", "4", "--channels-last", "--amp", "bf16", *COMMON]) == 0
    manifest = json.loads((out / "ilsvrc_loc" / "efficientnet_lite0-limit4" / "manifest.json").read_text())
    assert manifest["settings"]["channels_last"] is True and manifest["settings"]["amp"] == "bf16"
    summary = json.loads((out / "ilsvrc_loc" / "efficientnet_lite0-limit4" / "summary.json").read_text())
    assert summary["scored"] == 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_give_the_records_of_one(data: Path, tmp_path: Path) -> None:
    """2 CPU processes on gloo: ranks take alternate shards, rank 0 merges; same bytes as 1 process.

    torchrun gives each worker one intra-op thread (OMP_NUM_THREADS=1); the single-process reference
    runs with the same thread count, since the floating-point summation order of a convolution
    depends on how many threads split it.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = tmp_path / "single"
    args = ["run", "--suite", "ilsvrc_loc", "--data", str(data), "--device", "cpu", *COMMON]
    proc = subprocess.run([sys.executable, "-m", "bench", *args, "--out", str(single)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi = tmp_path / "multi"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        "-m", "bench", "run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(multi), "--device", "cpu", *COMMON,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = single / "ilsvrc_loc" / "efficientnet_lite0"
    b = multi / "ilsvrc_loc" / "efficientnet_lite0"
    assert _records(a) == _records(b)
    assert RunDir(a).read_summary() == RunDir(b).read_summary()
    import json

    assert json.loads((b / "manifest.json").read_text())["settings"]["world_size"] == 2


def test_sweep_from_cache_matches_direct_accumulation(cached_runs: Path, data: Path) -> None:
    """`bench sweep` on the cache equals SweepAccumulator fed by hand with the same GT-class maps."""
    import json

    import torch

    from bench.core.cam import upsample_cam
    from bench.data.open import open_dataset
    from bench.core.sweep import SweepAccumulator, scale_boxes

    run = cached_runs / "ilsvrc_loc" / "efficientnet_lite0"
    assert main(["sweep", str(run), "--no-progress"]) == 0
    result = json.loads((run / "sweep.json").read_text())
    assert result["images"] == N and result["at"] == "224"
    valset = open_dataset(data)
    records = RunDir(run).read_records()
    acc = SweepAccumulator()
    for shard in range(3):
        cache = read_cam_shard(RunDir(run), shard)
        for index, cams in zip(cache["index"], cache["cams"]):
            gt = valset.images[int(index)]
            w, h = int(records.iloc[int(index)]["width"]), int(records.iloc[int(index)]["height"])
            cam = upsample_cam(torch.from_numpy(cams[-1:].astype(np.float32)), (224, 224))[0].numpy()
            acc.add(cam, scale_boxes(gt.boxes, (w, h), (224, 224)))
    expected = acc.results()
    assert result["maxboxacc"] == pytest.approx(expected["maxboxacc"])
    assert result["maxboxacc_v2"] == pytest.approx(expected["maxboxacc_v2"])
    curves = (run / "sweep_curves.csv").read_text().splitlines()
    assert curves[0].startswith("tau,boxacc_30") and len(curves) == 1 + 100


def test_coco_export_and_box_ap_column(cached_runs: Path, tmp_path: Path) -> None:
    import json

    run = cached_runs / "ilsvrc_loc" / "efficientnet_lite0"
    assert main(["export", str(run), "--coco"]) == 0
    coco = json.loads((run / "coco.json").read_text())
    assert len(coco["images"]) == N and len(coco["annotations"]) >= N
    ev = json.loads((run / "coco_eval.json").read_text())
    assert 0.0 <= ev["AP"] <= 1.0
    out = tmp_path / "t2.csv"
    assert main(["table", "--paper", "2", "--runs", str(cached_runs), "--format", "csv", "--out", str(out)]) == 0
    import pandas as pd

    frame = pd.read_csv(out)
    assert frame.loc[0, "box_ap"] == pytest.approx(round(ev["AP"], 4))
