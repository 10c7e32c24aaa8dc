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
