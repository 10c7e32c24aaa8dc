"""The Python API: in-memory items scored through the metric objects equal the run folder
`bench score` writes from the same items; ``bench.evaluate`` has an explicit signature covering every
`bench run` flag; ``bench.BenchError`` is public."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import bench
from bench.data.open import open_dataset

pytest.importorskip("cv2")


def _items(data: Path, ranked: bool, seed: int) -> list[tuple]:
    valset = open_dataset(data)
    rng = np.random.default_rng(seed)
    n = len(valset.class_ids)
    items = []
    for gt in valset.images:
        maps = rng.random((n, 5, 6)).astype(np.float32) ** 4  # peaky maps at a 5 x 6 grid
        classes = rng.permutation(n)
        if ranked:
            items.append((gt.image_id, torch.from_numpy(classes), torch.from_numpy(maps), np.sort(rng.random(n))[::-1].copy()))
        else:
            items.append((gt.image_id, None, maps[int(np.flatnonzero(classes == gt.label)[0])]))
    return items


@pytest.mark.parametrize("suite, ranked", [("ilsvrc_loc_tight_loose", True), ("wsol_ilsvrc", False)])
def test_in_memory_items_equal_the_run_folder(tiny_val: Path, tmp_path: Path, suite: str, ranked: bool) -> None:
    items = _items(tiny_val, ranked, seed=1)
    # one image without an item, one item for no image, one bad map: every image accounted for
    dropped = items.pop(3)
    items.append(("not_an_image", *items[0][1:]))
    bad = list(items[5])
    bad[2] = torch.full_like(torch.as_tensor(bad[2]), float("nan"))
    items[5] = tuple(bad)
    memory = bench.score_maps(iter(items), tiny_val, suite)
    folder = bench.score_maps(items, tiny_val, suite, out=tmp_path / "out")
    assert memory.path is None and folder.path is not None and not any(tmp_path.glob("wsol-bench-*"))
    records, expected = memory.records, folder.records
    assert (records["status"] == "failed").sum() == 2
    assert records.loc[records["image_id"] == dropped[0], "error"].item() == "no item for this image"
    assert "NaN" in records.loc[records["image_id"] == items[5][0], "error"].item()
    same = ["error"]  # the reasons name the item here, the file there
    pd.testing.assert_frame_equal(records.drop(columns=same), expected.drop(columns=same))
    assert memory.summary == {k: v for k, v in folder.summary.items() if k not in ("unmatched_examples",)} | {"unmatched_examples": ["not_an_image"]}
    assert folder.summary["unmatched_maps"] == 1
    if suite.startswith("wsol"):
        assert memory.sweep == folder.sweep and memory.sweep["images"] == 16
    else:
        assert memory.sweep is None and folder.sweep is None


def test_duplicate_items_are_a_clear_error(tiny_val: Path) -> None:
    items = _items(tiny_val, True, seed=2)
    with pytest.raises(bench.BenchError, match="has two items"):
        bench.score_maps(items + items[:1], tiny_val, "ilsvrc_loc")


def _run_flags() -> set[str]:
    from bench.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices["run"]._actions if a.option_strings and a.dest != "help"}


def test_evaluate_signature_is_explicit_and_covers_every_run_flag() -> None:
    params = inspect.signature(bench.evaluate).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert all(p.annotation is not inspect.Parameter.empty for p in params.values())
    flags = _run_flags() - {"suite", "model", "data", "out", "no_progress"}
    assert flags - set(params) == set()
    assert "progress" in params
    with pytest.raises(TypeError):
        bench.evaluate("simplecnn_gap", "x", batch_sise=8)  # a typo is refused by Python itself


def test_bench_error_is_public() -> None:
    from bench.run.saved_maps import ScoreError
    from bench.runtime import BenchError

    assert bench.BenchError is BenchError and issubclass(ScoreError, bench.BenchError)
    assert "BenchError" in bench.__all__
