"""The README's "Use from Python" example runs as written, against the generated data set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.data.synthetic import SynthConfig, generate, val_root

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text.split("\n## Use from Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds exactly one Python example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _example()
    data = val_root(generate(tmp_path / "synth", SynthConfig(seed=7, classes=6, train_per_class=0, val_per_class=3)))
    line = next(l for l in code.splitlines() if l.startswith("DATA = "))
    code = code.replace(line, f"DATA = {str(data)!r}")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # the example's own asserts check its claims
    run, mine, scored = namespace["run"], namespace["mine"], namespace["scored"]
    assert run.summary["images"] == 18 and mine.path.parent == run.path.parent
    assert scored.summary["top1_loc_err"] is None and scored.summary["gt_class_maps_only"] and scored.summary["scored"] == 18
    assert (tmp_path / "results" / "ilsvrc_loc" / "random-maps" / "maps").is_dir()


def _loop_example(data: Path) -> str:
    text = README.read_text()
    section = text.split("\n## In a training loop\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section holds exactly one Python example"
    line = next(l for l in blocks[0].splitlines() if l.startswith("DATA = "))
    return blocks[0].replace(line, f"DATA = {str(data)!r}")


def _epochs(out: str) -> list[str]:
    lines = [l for l in out.splitlines() if l.startswith("epoch ")]
    assert [l.split(":")[0] for l in lines] == ["epoch 0", "epoch 1"] and all(l.endswith("on 18 images") for l in lines), out
    return lines


def test_readme_training_loop_runs_in_one_process_and_under_torchrun(
    tiny_val: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example as written: in this process, then under torchrun with 2 gloo processes. Epoch 0
    evaluates the packaged checkpoint before any training step, so both print the same numbers for
    the whole split (18 images, not a rank's 9); one torch thread each, as torchrun sets."""
    import os
    import subprocess
    import sys

    import torch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = _loop_example(tiny_val)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_loop"})
    finally:
        torch.set_num_threads(threads)
    single = _epochs(capsys.readouterr().out)
    script = tmp_path / "loop.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in (str(README.parent), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    torchrun = _epochs(proc.stdout)
    assert torchrun[0] == single[0]
