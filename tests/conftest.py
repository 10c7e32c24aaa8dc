"""Shared fixtures and session set-up for the test suite.

- ``BENCH_CACHE`` points at a fresh temporary folder for the whole session (subprocesses
  included), so the tests never write to the user's cache (``~/.cache/wsol-bench``).
- ``photo_runs``: the real-photo runs (scikit-image's photographs, Lite0), made once per session.
- ``slow``: tests that take more than ~10 s; deselect them with ``-m "not slow"``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Flags that keep CLI runs small and quiet in tests.
QUIET = ["--workers", "0", "--batch-size", "8", "--no-progress"]

_SESSION_CACHE: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_CACHE
    _SESSION_CACHE = tempfile.mkdtemp(prefix="wsol-bench-test-cache-")
    os.environ["BENCH_CACHE"] = _SESSION_CACHE


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@dataclass(frozen=True)
class PhotoRuns:
    """Lite0 on the 8 real photographs: ``top5`` (ilsvrc_loc) and ``tight_loose``
    (ilsvrc_loc_tight_loose), both under ``results`` on the data at ``data``."""

    data: Path
    results: Path
    top5: Path
    tight_loose: Path


@pytest.fixture(scope="session")
def photo_runs(tmp_path_factory: pytest.TempPathFactory) -> PhotoRuns:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    from bench.cli import main
    from bench.data.photos import write_real_photo_val

    root = tmp_path_factory.mktemp("photo_runs")
    data = write_real_photo_val(root / "photos")
    out = root / "results"
    assert main(["run", "--suite", "ilsvrc_loc", "--model", "efficientnet_lite0", "--data", str(data), "--out", str(out), *QUIET]) == 0
    assert main(["run", "--suite", "ilsvrc_loc_tight_loose", "--model", "efficientnet_lite0", "--data", str(data), "--out", str(out), *QUIET]) == 0
    return PhotoRuns(data, out, out / "ilsvrc_loc" / "efficientnet_lite0", out / "ilsvrc_loc_tight_loose" / "efficientnet_lite0")


@pytest.fixture(scope="session")
def tiny_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated val set of the demo nets' 6 classes, 3 images each (18), made once per session."""
    from bench.data.synthetic import SynthConfig, generate, val_root

    return val_root(generate(tmp_path_factory.mktemp("tiny_synth"), SynthConfig(seed=7, classes=6, train_per_class=0, val_per_class=3)))
