"""`bench score`: maps saved elsewhere give the same records as the run that made them.

A registry run with ``--save-cams`` caches, per image, the float16 CAMs of its top-5 classes and of
the GT class; written out as ``.npz`` (classes, maps, scores) those maps must score to records equal
to the run's own, byte for byte (same float16 values, same upsampling, same boxes). The GT-class map
alone (``.npy``) must reproduce the run's GT-known columns.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.core.cam import upsample_cam
from bench.data.open import open_dataset
from bench.run.cam_cache import read_cam_shard
from bench.core.records import parse_floats
from bench.run.results import RunDir
from bench.run.score import GT_ONLY, ScoreError, index_maps

COMMON = ["--workers", "0", "--no-progress"]
GTK_COLUMNS = ["image_id", "label", "status", "width", "height", "gtk_box", "gtk_iou", "gtk_hit"]


@pytest.fixture(scope="module")
def data(tiny_val: Path) -> Path:
    return tiny_val


@pytest.fixture(scope="module")
def cached_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    out = tmp_path_factory.mktemp("results")
    assert main(["run", "--suite", "ilsvrc_loc", "--model", "simplecnn_gap", "--data", str(data), "--out", str(out), "--save-cams", *COMMON]) == 0
    return RunDir(out / "ilsvrc_loc" / "simplecnn_gap")


def _text(run: Path) -> str:
    with gzip.open(run / "records.csv.gz", "rt") as fh:
        return fh.read()


def _export(run: RunDir, data: Path, folder: Path, kind: str, size: str = "grid", name: str = "stem") -> dict[str, Path]:
    """Write the run's cached maps as files; returns image_id -> file."""
    records = run.read_records()
    valset = open_dataset(data)
    cache = read_cam_shard(run, 0)
    files = {}
    for index, classes, cams in zip(cache["index"], cache["classes"], cache["cams"]):
        gt = valset.images[int(index)]
        row = records.iloc[int(index)]
        if name == "stem":
            path = folder / f"{gt.image_id}.{kind}"
        else:  # wsolevaluation: the image's path relative to the data root, plus .npy
            path = folder / (gt.path.relative_to(data).as_posix() + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "npz":
            scores = np.concatenate([parse_floats(row.top5_scores), [0.0]])
            np.savez(path, classes=classes, maps=cams, scores=scores)
        else:
            gt_map = cams[-1]
            if size == "original":
                gt_map = upsample_cam(torch.from_numpy(gt_map.astype(np.float32))[None], (int(row.height), int(row.width)))[0].numpy()
            elif size == "224":
                gt_map = upsample_cam(torch.from_numpy(gt_map.astype(np.float32))[None], (224, 224))[0].numpy()
            np.save(path, gt_map)
        files[gt.image_id] = path
    return files


def test_npz_maps_reproduce_the_runs_records(cached_run: RunDir, data: Path, tmp_path: Path) -> None:
    _export(cached_run, data, tmp_path / "maps", "npz")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "ilsvrc_loc", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    scored = tmp_path / "out" / "ilsvrc_loc" / "maps-maps"
    assert _text(scored) == _text(cached_run.path)
    summary = json.loads((scored / "summary.json").read_text())
    original = cached_run.read_summary()
    for key in ("top1_loc_err", "top5_loc_err", "gt_known_loc_err", "top1_cls_err", "mean_iou", "scored"):
        assert summary[key] == original[key]
    assert summary["unmatched_maps"] == 0
    manifest = json.loads((scored / "manifest.json").read_text())
    assert manifest["maps"]["folder"] == str((tmp_path / "maps").absolute())
    assert len(manifest["maps"]["fingerprint"]) == 64 and manifest["model"]["head"] == "maps"


def test_npz_with_class_ids_and_workers(cached_run: RunDir, data: Path, tmp_path: Path) -> None:
    """Classes given as WNID strings, scored on two processes: same records."""
    files = _export(cached_run, data, tmp_path / "maps", "npz")
    class_ids = open_dataset(data).class_ids
    for path in files.values():
        with np.load(path) as z:
            arrays = dict(z)
        arrays["classes"] = np.array([class_ids[c] for c in arrays["classes"]])
        np.savez(path, **arrays)
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--out", str(tmp_path / "out"), "--workers", "2", "--no-progress"]) == 0
    assert _text(tmp_path / "out" / "ilsvrc_loc" / "maps-maps") == _text(cached_run.path)


@pytest.mark.parametrize("size", ["grid", "original"])
def test_gt_class_npy_maps_give_the_gt_known_numbers(cached_run: RunDir, data: Path, tmp_path: Path, size: str) -> None:
    """At the feature grid or already at the original size (used as is): identical GT-known columns."""
    _export(cached_run, data, tmp_path / "maps", "npy", size=size)
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    run = RunDir(tmp_path / "out" / "ilsvrc_loc" / "maps-maps")
    got, want = run.read_records(), cached_run.read_records()
    assert got[GTK_COLUMNS].equals(want[GTK_COLUMNS])
    assert (got["guess_boxes"] == "").all() and (got["top5_classes"] == "").all()
    summary, original = run.read_summary(), cached_run.read_summary()
    for key in ("gt_known_loc_err", "mean_iou", "iou_ge_0.3", "iou_ge_0.5", "iou_ge_0.7", "loc_images"):
        assert summary[key] == original[key]
    for key in ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err"):
        assert summary[key] is None
    assert summary["gt_class_maps_only"] is True and summary["note"].startswith(GT_ONLY)


@pytest.mark.parametrize("size", ["224", "original"])
def test_wsolevaluation_named_maps_are_found(cached_run: RunDir, data: Path, tmp_path: Path, size: str) -> None:
    files = _export(cached_run, data, tmp_path / "maps", "npy", size=size, name="wsol")
    assert all(p.name.endswith(".png.npy") or p.name.endswith(".JPEG.npy") or p.name.count(".") == 2 for p in files.values())
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    run = RunDir(tmp_path / "out" / "ilsvrc_loc" / "maps-maps")
    frame = run.read_records()
    assert (frame["status"] == "ok").all() and len(frame) == len(files)
    if size == "original":
        assert frame["gtk_iou"].equals(cached_run.read_records()["gtk_iou"])
    index = (run.path / "map_files.csv").read_text().splitlines()
    assert index[1].split(",")[1] == files[index[1].split(",")[0]].relative_to(tmp_path / "maps").as_posix()


def test_missing_nan_misshaped_maps_are_failed_records(cached_run: RunDir, data: Path, tmp_path: Path) -> None:
    files = _export(cached_run, data, tmp_path / "maps", "npz")
    ids = sorted(files)
    files[ids[0]].unlink()  # missing
    with np.load(files[ids[1]]) as z:
        arrays = dict(z)
    arrays["maps"] = arrays["maps"].astype(np.float32)
    arrays["maps"][2, 3, 4] = np.nan
    np.savez(files[ids[1]], **arrays)  # NaN
    arrays["maps"] = arrays["maps"][:, :, :, None]
    np.savez(files[ids[2]], **arrays)  # 4-D
    np.savez(tmp_path / "maps" / "not_an_image.npz", classes=np.zeros(5, np.int64), maps=np.zeros((5, 2, 2)))
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    run = RunDir(tmp_path / "out" / "ilsvrc_loc" / "maps-maps")
    frame = run.read_records().set_index("image_id")
    summary = run.read_summary()
    assert summary["failed"] == 3 and summary["images"] == len(ids)
    assert summary["unmatched_maps"] == 1 and summary["unmatched_examples"] == ["not_an_image.npz"]
    assert "no map file" in frame.loc[ids[0], "error"]
    assert "non-finite" in frame.loc[ids[1], "error"]
    assert "shape" in frame.loc[ids[2], "error"]
    ok = frame.drop(index=ids[:3])
    want = cached_run.read_records().set_index("image_id").drop(index=ids[:3])
    assert ok.equals(want)


def test_ambiguous_stem_and_mixed_kinds_are_clear_errors(cached_run: RunDir, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _export(cached_run, data, tmp_path / "maps", "npy")
    first = sorted(files)[0]
    # a matching relative path decides first (a stem elsewhere is then just an unmatched file) ...
    (tmp_path / "maps" / "a").mkdir()
    np.save(tmp_path / "maps" / "a" / f"{first}.npy", np.zeros((3, 3), np.float32))
    index = index_maps(tmp_path / "maps", open_dataset(data))
    assert index.files[first] == f"{first}.npy" and index.unmatched == (f"a/{first}.npy",)
    # ... but when only the stem can decide, two files with it is an error naming both
    (tmp_path / "maps" / "b").mkdir()
    files[first].rename(tmp_path / "maps" / "b" / f"{first}.npy")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bench score: error:" in err and f"a/{first}.npy" in err and f"b/{first}.npy" in err
    (tmp_path / "maps" / "a" / f"{first}.npy").unlink()
    np.savez(tmp_path / "maps" / "x.npz", classes=np.zeros(5), maps=np.zeros((5, 2, 2)))
    with pytest.raises(ScoreError, match="both .npy"):
        index_maps(tmp_path / "maps", open_dataset(data))


def test_tables_compare_and_sweep_read_score_runs(cached_run: RunDir, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _export(cached_run, data, tmp_path / "npy", "npy")
    _export(cached_run, data, tmp_path / "npz", "npz")
    out = tmp_path / "out"
    for folder in ("npy", "npz"):
        assert main(["score", str(tmp_path / folder), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["table", "--paper", "2", "--runs", str(out), "--format", "csv"]) == 0
    table = capsys.readouterr().out
    assert f"maps-npy,maps-npy,ilsvrc_loc,18,{GT_ONLY},{GT_ONLY}" in table
    summary = cached_run.read_summary()
    assert f"maps-npz,maps-npz,ilsvrc_loc,18,{summary['top1_loc_err']:.2f},{summary['top5_loc_err']:.2f}" in table
    npy_run, npz_run = out / "ilsvrc_loc" / "maps-npy", out / "ilsvrc_loc" / "maps-npz"
    assert main(["compare", str(npz_run), str(npy_run), "--format", "csv"]) == 0
    rows = {line.split(",")[0]: line.split(",") for line in capsys.readouterr().out.splitlines()}
    assert float(rows["gt_known_loc_err"][3]) == 0.0 and rows["top1_loc_err"][2] == ""  # no top-k in .npy runs
    # the sweep of the GT-class maps read back from the maps folder equals the sweep of the run's cache
    for run in (cached_run.path, npy_run, npz_run):
        assert main(["sweep", str(run), "--no-progress"]) == 0
    want = json.loads((cached_run.path / "sweep.json").read_text())
    for run in (npy_run, npz_run):
        assert json.loads((run / "sweep.json").read_text()) == want
        assert (run / "sweep_curves.csv").read_bytes() == (cached_run.path / "sweep_curves.csv").read_bytes()
    # maps changed after the run: the sweep refuses instead of describing other maps
    first = sorted((tmp_path / "npy").glob("*.npy"))[0]
    np.save(first, np.load(first) + np.float16(1))
    assert main(["sweep", str(npy_run), "--no-progress"]) == 2
    assert "changed since the run" in capsys.readouterr().err


def test_workers_from_a_script_that_is_not_a_file_score_inline(cached_run: RunDir, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python - < script.py` has __main__.__file__ == '<stdin>': spawned workers could not import it."""
    import sys
    import types

    from bench.run.score import score_folder

    _export(cached_run, data, tmp_path / "maps", "npz")
    fake = types.ModuleType("__main__")
    fake.__file__ = "<stdin>"
    monkeypatch.setitem(sys.modules, "__main__", fake)
    with pytest.warns(UserWarning, match="scoring inline"):
        run = score_folder(tmp_path / "maps", data, "ilsvrc_loc", tmp_path / "out", workers=2, progress=False)
    assert _text(run.path) == _text(cached_run.path)


# --------------------------------------------------------------------------- pictures of score runs


def _replayed(run: Path) -> dict[str, tuple[list[int], np.ndarray]]:
    from bench.run.replay import RunReplay

    replay = RunReplay.open(run)
    return replay.source, {m.gt.image_id: (m.classes.tolist(), m.maps) for m in replay.iter_maps(replay.run_image_ids())}


def test_show_and_report_draw_a_score_run_from_its_saved_maps(cached_run: RunDir, data: Path, tmp_path: Path) -> None:
    _export(cached_run, data, tmp_path / "maps", "npz")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "ilsvrc_loc", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    scored = tmp_path / "out" / "ilsvrc_loc" / "maps-maps"
    source, from_files = _replayed(scored)
    cache_source, from_cache = _replayed(cached_run.path)
    assert (source, cache_source) == ("saved maps", "map cache")
    assert from_files.keys() == from_cache.keys()
    for image_id, (classes, maps) in from_files.items():  # the same maps, read from the saved files
        assert classes == from_cache[image_id][0]
        np.testing.assert_array_equal(maps, from_cache[image_id][1])
    assert main(["show", str(scored), "--worst", "2", "--out", str(tmp_path / "show")]) == 0
    pngs = sorted((tmp_path / "show").rglob("*.png"))
    assert len(pngs) == 2
    report = tmp_path / "report.html"
    assert main(["report", str(scored), "--out", str(report), "--gallery", "1"]) == 0
    text = report.read_text()
    assert "read from the run's saved maps" in text and "Cannot recompute" not in text


def test_show_draws_gt_class_npy_maps_in_both_panels(cached_run: RunDir, data: Path, tmp_path: Path) -> None:
    _export(cached_run, data, tmp_path / "maps", "npy")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "ilsvrc_loc", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    scored = tmp_path / "out" / "ilsvrc_loc" / "maps-maps"
    source, maps = _replayed(scored)
    assert source == "saved maps"
    for classes, pair in maps.values():
        assert classes[0] == classes[1]
        np.testing.assert_array_equal(pair[0], pair[1])
    assert main(["show", str(scored), "--best", "1", "--out", str(tmp_path / "show")]) == 0
    assert len(list((tmp_path / "show").rglob("*.png"))) == 1


def test_wsol_suite_scores_saved_maps_into_the_runs_sweep(data: Path, tmp_path: Path) -> None:
    """bench score with a wsol_* suite sweeps the saved maps as bench run sweeps its cache."""
    pytest.importorskip("cv2")
    out = tmp_path / "results"
    args = ["run", "--suite", "wsol_ilsvrc", "--model", "simplecnn_gap", "--data", str(data), "--out", str(out), "--step", "0.05", *COMMON]
    assert main(args) == 0
    run = RunDir(out / "wsol_ilsvrc" / "simplecnn_gap")
    _export(run, data, tmp_path / "maps", "npz")
    assert main(["score", str(tmp_path / "maps"), "--data", str(data), "--suite", "wsol_ilsvrc", "--out", str(tmp_path / "scored"), "--no-progress"]) == 0
    scored = tmp_path / "scored" / "wsol_ilsvrc" / "maps-maps"
    assert _text(scored) == _text(run.path)
    mine, theirs = json.loads((scored / "sweep.json").read_text()), json.loads((run.path / "sweep.json").read_text())
    assert mine["rules"] == theirs["rules"] == "wsol" and mine["threshold_chosen_on"].startswith("test")
    assert mine["images"] == theirs["images"] == run.read_summary()["scored"]
    # The suite's own step (0.001) for the score run, 0.05 for the run: compare at the run's taus.
    a, b = pd.read_csv(scored / "sweep_curves.csv"), pd.read_csv(run.path / "sweep_curves.csv")
    at = a.set_index(a["tau"].round(6)).loc[b["tau"].round(6)]
    np.testing.assert_array_equal(at.drop(columns="tau").to_numpy(), b.drop(columns="tau").to_numpy())
