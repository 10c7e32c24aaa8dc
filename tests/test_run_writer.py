"""The one run writer (bench.run.writer): shard plan, resume, "already complete" writes nothing, for
`bench run`, `bench score`, `bench rescore` (and `bench tencrop`, through the same writer: tests/test_caffe.py);
`bench score` reruns, resumes and refusals; saved maps scored without the image files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.classes import load_wnids
from bench.data.fixtures import generated_samples, write_ilsvrc_layout
from bench.run.manifest import RunConflict
from bench.run.results import RunDir
from bench.run.writer import RunWriter, shard_count, summarize_records

QUIET = ["--no-progress"]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the writer itself -------------------------------------------------------------------------
def test_shard_plan_per_rank_and_ranges(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert shard_count(10, 3) == 4 and shard_count(9, 3) == 3 and shard_count(0, 3) == 0
    w = RunWriter(run, {}, n_images=10, shard_size=3, rank=1, world=2)
    assert w.todo == [1, 3] and w.shard_range(3) == range(9, 10) and w.indices() == [3, 4, 5, 9]
    run.write_shard(1, [])  # a finished shard (records present) is skipped on resume
    assert RunWriter(run, {}, n_images=10, shard_size=3, rank=1, world=2).todo == [3]
    assert RunWriter(run, {}, n_images=10, shard_size=3).todo == [0, 2, 3]
    assert not RunWriter(run, {"finished": "x"}, n_images=10, shard_size=3).complete  # no summary, no merged records


def test_open_refuses_another_identity_naming_the_keys(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    with RunWriter.open(run, {"a": 1, "b": 2}, lambda: {"identity": {"a": 1, "b": 2}}, n_images=1, shard_size=1) as w:
        assert w.todo == [0] and run.exists()
    assert not run.lock_path.exists()  # the lock is released
    with pytest.raises(RunConflict, match=r"different run \(b differ\)"):
        with RunWriter.open(run, {"a": 1, "b": 3}, lambda: {}, n_images=1, shard_size=1):
            pass


# ---- bench run / bench rescore: a rerun writes nothing ------------------------------------------
@pytest.fixture(scope="module")
def cached(tiny_val: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("writer_runs")
    args = ["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(tiny_val), "--out", str(out), "--save-cams",
            "--shard-size", "5", "--workers", "0", *QUIET]  # fmt: skip
    assert main(args) == 0
    return out


def test_run_rerun_writes_nothing(cached: Path, tiny_val: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = cached / "demo" / "simplecnn_gap"
    before = _snapshot(run)
    assert json.loads((run / "manifest.json").read_text())["finished"]
    capsys.readouterr()
    args = ["run", "--suite", "demo", "--model", "simplecnn_gap", "--data", str(tiny_val), "--out", str(cached), "--save-cams",
            "--shard-size", "5", "--workers", "0", *QUIET]  # fmt: skip
    assert main(args) == 0
    assert "already complete, nothing recomputed" in capsys.readouterr().out
    assert _snapshot(run) == before  # manifest 'finished', records, summary, shards, cache: same bytes and times


def test_run_summary_is_derived_from_the_records(cached: Path) -> None:
    run = RunDir(cached / "demo" / "simplecnn_gap")
    assert summarize_records(run.read_manifest(), run.read_records()) == run.read_summary()


def test_rescore_resumes_and_a_rerun_writes_nothing(cached: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = str(cached / "demo" / "simplecnn_gap")
    argv = ["rescore", source, "--protocol", "demo_tight_loose", "--out", str(tmp_path / "whole"), *QUIET]
    assert main(argv) == 0
    whole = tmp_path / "whole" / "demo_tight_loose" / "simplecnn_gap"
    # interrupted after its first shard, then resumed: the same files
    import bench.run.rescore as rescore

    real, calls = rescore._rescore_shard, []

    def once(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rescore, "_rescore_shard", once)
    part = ["rescore", source, "--protocol", "demo_tight_loose", "--out", str(tmp_path / "part"), *QUIET]
    assert main(part) not in (0, 2)  # Ctrl-C: the CLI says so and exits non-zero
    resumed = tmp_path / "part" / "demo_tight_loose" / "simplecnn_gap"
    first = (resumed / "records" / "shard-00000.csv.gz").stat().st_mtime_ns
    assert not (resumed / "summary.json").exists()
    monkeypatch.setattr(rescore, "_rescore_shard", real)
    assert main(part) == 0
    assert (resumed / "records" / "shard-00000.csv.gz").stat().st_mtime_ns == first  # finished shards are kept
    for name in ("records.csv.gz", "summary.json"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes()
    before = _snapshot(resumed)
    assert main(part) == 0
    assert _snapshot(resumed) == before


def test_wsol_run_rerun_writes_nothing(tiny_val: Path, tmp_path: Path) -> None:
    """A wsol_* run's sweep is not redone when sweep.json is newer than the summary with the same
    step; another --step redoes it."""
    args = ["run", "--suite", "wsol_ilsvrc", "--model", "simplecnn_gap", "--data", str(tiny_val), "--out", str(tmp_path),
            "--step", "0.05", "--workers", "0", *QUIET]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "wsol_ilsvrc" / "simplecnn_gap"
    before = _snapshot(run)
    assert main(args) == 0
    assert _snapshot(run) == before
    assert main([*args[:-4], "0.1", *args[-3:]]) == 0
    assert json.loads((run / "sweep.json").read_text())["step"] == 0.1
    assert _snapshot(run)["records.csv.gz"] == before["records.csv.gz"]


# ---- bench score: rerun, resume, refusal ----------------------------------------------------------
def _interrupt_call(monkeypatch: pytest.MonkeyPatch, module: object, name: str, after: int):  # type: ignore[no-untyped-def]
    """Replace ``module.name`` by a wrapper that raises KeyboardInterrupt on call ``after + 1`` (Ctrl-C
    after ``after`` images); returns the real function, to put back for the resume."""
    real, calls = getattr(module, name), []

    def interrupting(context, task):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == after + 1:
            raise KeyboardInterrupt
        return real(context, task)

    monkeypatch.setattr(module, name, interrupting)
    return real


def _write_maps(data: Path, folder: Path, size: tuple[int, int] = (14, 14), seed: int = 0) -> None:
    """One GT-class map per image (a smooth bump at a random place), named by image stem."""
    from bench.data.open import open_dataset

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for gt in open_dataset(data).images:
        cy, cx = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        np.save(folder / f"{gt.image_id}.npy", np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0).astype(np.float32))


def test_score_rerun_resume_and_other_maps(tiny_val: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    maps = tmp_path / "maps"
    _write_maps(tiny_val, maps)
    common = ["--data", str(tiny_val), "--suite", "ilsvrc_loc", "--workers", "0", *QUIET]
    assert main(["score", str(maps), "--out", str(tmp_path / "whole"), *common]) == 0
    whole = tmp_path / "whole" / "ilsvrc_loc" / "maps-maps"
    # same maps and suite again: already complete, nothing written
    before = _snapshot(whole)
    capsys.readouterr()
    assert main(["score", str(maps), "--out", str(tmp_path / "whole"), *common]) == 0
    assert "already complete" in capsys.readouterr().out
    assert _snapshot(whole) == before

    # interrupted after 7 images (shard size 1000 -> use the API with small shards), then resumed
    import bench.run.score as score

    real = _interrupt_call(monkeypatch, score, "score_image", after=7)
    part = RunDir(tmp_path / "part")
    with pytest.raises(KeyboardInterrupt):
        score.score_folder(maps, tiny_val, "ilsvrc_loc", run=part, shard_size=5, progress=False)
    assert part.done_shards() == {0}
    first = part.shard_path(0).stat().st_mtime_ns
    monkeypatch.setattr(score, "score_image", real)
    score.score_folder(maps, tiny_val, "ilsvrc_loc", run=part, shard_size=5, progress=False)
    assert part.shard_path(0).stat().st_mtime_ns == first
    assert part.records_path.read_bytes() == (whole / "records.csv.gz").read_bytes()
    fingerprint = json.loads((whole / "manifest.json").read_text())["maps"]["fingerprint"]
    assert part.read_manifest()["maps"]["fingerprint"] == fingerprint  # every file read, across the interruption

    # other maps: a changed file, then a missing one -> refused, naming them and --name / --out
    victim = sorted(maps.glob("*.npy"))[3]
    np.save(victim, np.ones((14, 14), dtype=np.float32))
    capsys.readouterr()
    assert main(["score", str(maps), "--out", str(tmp_path / "whole"), *common]) == 2
    err = capsys.readouterr().err
    assert "changed since" in err and victim.name in err and "--name" in err and "--out" in err
    victim.unlink()
    assert main(["score", str(maps), "--out", str(tmp_path / "whole"), *common]) == 2
    err = capsys.readouterr().err
    assert "another map file" in err and victim.stem in err and "--name" in err
    assert _snapshot(whole) == before  # a refusal writes nothing


# ---- scoring without the images -------------------------------------------------------------------
@pytest.fixture()
def wsol_data(tmp_path: Path) -> Path:
    wnids = load_wnids()
    roots = write_ilsvrc_layout(tmp_path / "data", generated_samples(8, seed=3, wnids=[wnids[i] for i in (3, 500, 900)]), layouts=("wsol",))
    return roots["wsol"]


def test_score_without_image_files_from_wsol_metadata(wsol_data: Path, tmp_path: Path) -> None:
    """image_sizes.txt gives every size: the same records with and without the image files; an image
    whose size is not stated and whose file is missing is a failed record saying so."""
    maps = tmp_path / "maps"
    _write_maps(wsol_data, maps, size=(9, 11), seed=4)
    common = ["--data", str(wsol_data), "--suite", "wsol_ilsvrc", "--workers", "0", *QUIET]
    assert main(["score", str(maps), "--out", str(tmp_path / "with"), *common]) == 0
    with_images = tmp_path / "with" / "wsol_ilsvrc" / "maps-maps"
    images = (wsol_data / "val").resolve()
    shutil.rmtree(images)
    assert main(["score", str(maps), "--out", str(tmp_path / "without"), *common]) == 0
    without = tmp_path / "without" / "wsol_ilsvrc" / "maps-maps"
    for name in ("records.csv.gz", "summary.json", "sweep.json", "sweep_curves.csv"):
        assert (without / name).read_bytes() == (with_images / name).read_bytes(), name
    records = RunDir(without).read_records()
    assert (records["status"] == "ok").all() and len(records) == 8

    sizes = wsol_data / "metadata" / "test" / "image_sizes.txt"
    if not sizes.is_file():
        sizes = next(wsol_data.rglob("image_sizes.txt"))
    lines = sizes.read_text().splitlines()
    dropped = lines.pop(2)
    sizes.write_text("\n".join(lines) + "\n")
    assert main(["score", str(maps), "--out", str(tmp_path / "unsized"), *common]) == 0
    frame = RunDir(tmp_path / "unsized" / "wsol_ilsvrc" / "maps-maps").read_records().set_index("image_id")
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and Path(dropped.split(",")[0]).stem == failed.index[0]
    assert "no image file" in failed["error"].iloc[0] and "state no size" in failed["error"].iloc[0]
    assert (frame["status"] == "ok").sum() == 7


def test_wsol_score_sweep_fed_in_one_pass_resumes_and_equals_two_passes(wsol_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wsol_* score sweeps during its records pass (each map read once; per-shard hit counts beside the
    records): sweep.json / sweep_curves.csv byte-equal to the two-pass sweep of the finished run's maps,
    the same after an interruption and resume, and a rerun writes nothing. An unscored image (a missing
    map) counts as failed in both."""
    pytest.importorskip("cv2")
    import bench.run.score as score
    from bench.run.sweeps import wsol_sweep_run

    maps = tmp_path / "maps"
    _write_maps(wsol_data, maps, size=(9, 11), seed=5)
    sorted(maps.glob("*.npy"))[2].unlink()
    whole = RunDir(tmp_path / "whole")
    score.score_folder(maps, wsol_data, "wsol_ilsvrc", run=whole, shard_size=3, progress=False)
    sides = sorted(p.name for p in whole.shard_dir.glob("*.wsol.json"))
    assert sides == [f"shard-{k:05d}.wsol.json" for k in range(3)]
    held = [json.loads((whole.shard_dir / s).read_text()) for s in sides]
    assert sum(h["images"] for h in held) == 7 == json.loads((whole.path / "sweep.json").read_text())["images"]

    # the two-pass sweep (maps read again from the folder) of the same finished run: the same bytes
    two = RunDir(tmp_path / "copy" / "whole")  # the folder name is the run's model name
    shutil.copytree(whole.path, two.path)
    for p in [*two.shard_dir.glob("*.wsol.json"), two.path / "sweep.json", two.path / "sweep_curves.csv"]:
        p.unlink()
    manifest = json.loads((two.path / "manifest.json").read_text())
    assert manifest["maps"]["folder"] == str(maps.absolute())
    calls = []
    import bench.run.wsol_suite as ws

    monkeypatch.setattr(ws, "wsol_sweep_run", lambda *a, **k: calls.append(1) or wsol_sweep_run(*a, **k))
    score.score_folder(maps, wsol_data, "wsol_ilsvrc", run=two, shard_size=3, progress=False)  # complete: only the sweep runs
    assert calls == [1]
    for name in ("sweep.json", "sweep_curves.csv", "records.csv.gz", "summary.json"):
        assert (two.path / name).read_bytes() == (whole.path / name).read_bytes(), name

    # interrupted in the second shard, then resumed: the same files; the first shard's counts are kept
    real = _interrupt_call(monkeypatch, score, "_score_one", after=4)
    part = RunDir(tmp_path / "part" / "whole")
    with pytest.raises(KeyboardInterrupt):
        score.score_folder(maps, wsol_data, "wsol_ilsvrc", run=part, shard_size=3, progress=False)
    assert part.done_shards() == {0} and (part.shard_dir / sides[0]).is_file() and not (part.path / "sweep.json").exists()
    kept = (part.shard_dir / sides[0]).stat().st_mtime_ns
    monkeypatch.setattr(score, "_score_one", real)
    calls.clear()
    score.score_folder(maps, wsol_data, "wsol_ilsvrc", run=part, shard_size=3, progress=False)
    assert calls == [] and (part.shard_dir / sides[0]).stat().st_mtime_ns == kept  # fed: no second pass over the maps
    for name in ("sweep.json", "sweep_curves.csv", "records.csv.gz", "summary.json", *[f"records/{s}" for s in sides]):
        assert (part.path / name).read_bytes() == (whole.path / name).read_bytes(), name
    before = _snapshot(part.path)
    score.score_folder(maps, wsol_data, "wsol_ilsvrc", run=part, shard_size=3, progress=False)
    assert _snapshot(part.path) == before
