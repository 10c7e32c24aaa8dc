"""Tests of bench.run.parallel (ordered, bounded process-pool streaming) and `bench sweep --workers`."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bench.run.parallel import default_workers, map_in_processes


def _square_with_pid(offset: int, x: int) -> tuple[int, int]:
    return x * x + offset, os.getpid()


def _fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"item {x} is bad")
    return x


def test_inline_and_pool_give_the_same_ordered_results() -> None:
    items = list(range(41))
    inline = list(map_in_processes(partial(_square_with_pid, 3), iter(items), workers=1))
    pooled = list(map_in_processes(partial(_square_with_pid, 3), iter(items), workers=2, chunksize=4))
    expected = [x * x + 3 for x in items]
    assert [r for r, _ in inline] == expected
    assert [r for r, _ in pooled] == expected  # input order, whatever finishes first
    assert {pid for _, pid in inline} == {os.getpid()}  # workers=1: computed in this process
    assert os.getpid() not in {pid for _, pid in pooled}  # workers=2: computed in worker processes


def test_the_stream_is_consumed_lazily_and_bounded() -> None:
    pulled = []

    def stream():  # noqa: ANN202
        for x in range(100):
            pulled.append(x)
            yield x

    results = map_in_processes(partial(_square_with_pid, 0), stream(), workers=2, chunksize=3, max_in_flight=2)
    first, _ = next(results)
    assert first == 0
    # 2 chunks of 3 queued before the first result is handed out, no more
    assert len(pulled) == 6
    rest = [r for r, _ in results]
    assert rest == [x * x for x in range(1, 100)] and len(pulled) == 100


def test_a_worker_error_is_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="item 7 is bad"):
        list(map_in_processes(_fail_on_seven, range(20), workers=2, chunksize=2))
    with pytest.raises(ValueError, match="item 7 is bad"):
        list(map_in_processes(_fail_on_seven, range(20), workers=1))


def test_bad_arguments_and_default_workers() -> None:
    with pytest.raises(ValueError, match="chunksize"):
        list(map_in_processes(_fail_on_seven, range(3), workers=2, chunksize=0))
    assert 1 <= default_workers() <= (os.cpu_count() or 1)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("efficientnet_lite_pytorch")
    from bench.cli import main
    from bench.data.classes import load_wnids
    from bench.data.fixtures import generated_samples, write_ilsvrc_layout

    wnids = load_wnids()
    samples = generated_samples(11, seed=5, wnids=[wnids[i] for i in (7, 250, 901)])
    data = write_ilsvrc_layout(tmp_path_factory.mktemp("par_data"), samples, layouts=("csv",))["csv"]
    out = tmp_path_factory.mktemp("par_runs")
    flags = ["--batch-size", "4", "--workers", "0", "--no-progress", "--shard-size", "4", "--model", "efficientnet_lite0"]
    assert main(["run", "--suite", "ilsvrc_loc", "--data", str(data), "--out", str(out), "--save-cams", *flags]) == 0
    return out / "ilsvrc_loc" / "efficientnet_lite0"


@pytest.mark.slow
def test_sweep_with_two_workers_equals_one(cached_run: Path) -> None:
    """The same sweep.json and curves from 1 process and from 2 worker processes (3 shards)."""
    from bench.cli import main

    outputs = {}
    for workers in (1, 2):
        assert main(["sweep", str(cached_run), "--step", "0.001", "--workers", str(workers), "--no-progress"]) == 0
        outputs[workers] = (
            json.loads((cached_run / "sweep.json").read_text()),
            (cached_run / "sweep_curves.csv").read_text(),
        )
    assert outputs[1] == outputs[2]
    assert outputs[1][0]["images"] == 11
    assert len(outputs[1][1].splitlines()) == 1 + 1000


def test_sweep_counts_equal_the_accumulator_fed_directly(cached_run: Path) -> None:
    """sweep_counts (what a worker computes) adds up to SweepAccumulator.add on the same maps."""
    import torch

    from bench.analysis.run_metrics import SweepItem, SweepSettings, sweep_counts
    from bench.core.cam import upsample_cam
    from bench.core.sweep import DEFAULT_THRESHOLDS, SweepAccumulator, scale_boxes

    rng = np.random.default_rng(0)
    settings = SweepSettings(tuple(DEFAULT_THRESHOLDS.tolist()), "224", "bilinear", None)
    by_counts, direct = SweepAccumulator(), SweepAccumulator()
    for k in range(5):
        cam = rng.standard_normal((7, 7)).astype(np.float16)
        boxes = np.array([[10 * k, 20, 300, 200 + k]])
        item = SweepItem(f"img{k}", cam, boxes, (375, 500))
        by_counts.add_counts(sweep_counts(settings, item))
        up = upsample_cam(torch.from_numpy(cam[None].astype(np.float32)), (224, 224), mode="bilinear")[0].numpy()
        direct.add(up, scale_boxes(boxes, (500, 375), (224, 224)))
    a, b = by_counts.results(), direct.results()
    assert a["curves"].equals(b["curves"])
    assert a["maxboxacc"] == b["maxboxacc"] and a["maxboxacc_v2"] == b["maxboxacc_v2"]


@pytest.mark.slow
def test_wsol_exact_sweep_with_two_workers_equals_one(cached_run: Path) -> None:
    """The OpenCV-exact (wsolevaluation) sweep gives the same files with 1 and 2 worker processes."""
    pytest.importorskip("cv2")
    from bench.analysis.run_metrics import wsol_sweep_run
    from bench.run.results import RunDir

    outputs = {}
    for workers in (1, 2):
        result = wsol_sweep_run(RunDir(cached_run), step=0.01, progress=False, workers=workers)
        outputs[workers] = (result, (cached_run / "sweep_curves.csv").read_text())
    assert outputs[1] == outputs[2]
    assert outputs[1][0]["images"] == 11 and outputs[1][0]["rules"] == "wsol"


def test_inline_run_restores_the_callers_torch_threads_between_items() -> None:
    """Inline, each item runs on one torch thread; the caller's code between items keeps its own count."""
    import torch

    from bench.run.parallel import map_in_processes

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        for inner in map_in_processes(lambda _item: torch.get_num_threads(), range(3), 1):
            seen.append((inner, torch.get_num_threads()))
        assert seen == [(1, 2)] * 3
    finally:
        torch.set_num_threads(before)
