"""CUB-200-2011 and wsolevaluation layouts: hand-built CUB boxes, describe/reopen, and the same
generated data in ILSVRC, CUB and wsolevaluation layouts giving identical records (demo net)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.dataset import DataError
from bench.data.native_layouts import write_cub_layout, write_wsol_layout
from bench.data.open import open_dataset, reopen
from bench.data.synthetic import SynthConfig, generate, mask_path, val_root


def _img(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, dtype=np.uint8)).save(path)


def test_cub_float_boxes_and_splits(tmp_path: Path) -> None:
    """Float boxes become (int(x), int(y), int(x + w), int(y + h)), then clipped to the image."""
    r = tmp_path / "CUB_200_2011"
    _img(r / "images/001.Black_footed_Albatross/a_1.jpg", 500, 335)
    _img(r / "images/001.Black_footed_Albatross/a_2.jpg", 100, 80)
    _img(r / "images/002.Laysan_Albatross/b_1.jpg", 60, 40)
    (r / "images.txt").write_text("1 001.Black_footed_Albatross/a_1.jpg\n2 001.Black_footed_Albatross/a_2.jpg\n3 002.Laysan_Albatross/b_1.jpg\n")
    (r / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (r / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (r / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
    # image 1 as in CUB (60,27,385,331 in wsolevaluation's metadata); image 3: 10.7 + 49.6 = 60.3 -> 60 -> clipped to 59
    (r / "bounding_boxes.txt").write_text("1 60.0 27.0 325.0 304.0\n2 1.5 2.5 3.2 4.9\n3 10.7 5.2 49.6 30.1\n")
    test = open_dataset(tmp_path)
    assert test.layout == "cub" and test.split == "test"
    assert test.class_ids == ("001.Black_footed_Albatross", "002.Laysan_Albatross")
    assert test.class_names == ("Black footed Albatross", "Laysan Albatross")
    assert [(i.image_id, i.label, i.boxes.tolist()) for i in test.images] == [
        ("a_1", 0, [[60, 27, 385, 331]]),
        ("b_1", 1, [[10, 5, 59, 35]]),  # x: int(10.7)=10, int(60.3)=60 -> 59; y: int(5.2)=5, int(35.3)=35
    ]
    assert test.clipped_boxes == 1
    train = open_dataset(tmp_path, split="train")
    assert [(i.image_id, i.boxes.tolist()) for i in train.images] == [("a_2", [[1, 2, 4, 7]])]  # int(4.7), int(7.4)
    assert len(open_dataset(tmp_path, split="all")) == 3
    with pytest.raises(DataError, match="bad-split"):
        open_dataset(tmp_path, layout="cub", split="val")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """One-box and multi-instance generated val sets, each written in every layout."""
    base = tmp_path_factory.mktemp("native")
    out: dict[str, Path] = {}
    single = generate(base / "single", SynthConfig(seed=5, classes=6, train_per_class=1, val_per_class=5, multi_instance_prob=0.0), progress=False)
    src = open_dataset(val_root(single))
    out["ilsvrc"] = val_root(single)
    out["cub"] = write_cub_layout(src, base / "cub")
    out["wsol_cub"] = write_wsol_layout(src, base / "wsol_cub", "CUB", class_folder=lambda i, c: f"{i + 1:03d}.c{i}")
    ilsvrc_wsol = write_wsol_layout(src, base / "wsol_ilsvrc", "ILSVRC")
    shutil.copyfile(val_root(single) / "LOC_synset_mapping.txt", ilsvrc_wsol / "LOC_synset_mapping.txt")
    out["wsol_ilsvrc"] = ilsvrc_wsol
    multi = generate(base / "multi", SynthConfig(seed=6, classes=6, train_per_class=1, val_per_class=5, multi_instance_prob=0.6), progress=False)
    msrc = open_dataset(val_root(multi))
    out["multi_ilsvrc"] = val_root(multi)
    out["openimages"] = write_wsol_layout(
        msrc, base / "oi", "OpenImages", class_folder=lambda i, c: f"oi{i}",
        masks=lambda image_id: np.asarray(Image.open(mask_path(multi, image_id))),
    )
    return out


def _gt(ds):
    return [(i.image_id, i.label, i.boxes.tolist()) for i in ds.images]


def test_layouts_give_the_same_gt(generated) -> None:
    ref = open_dataset(generated["ilsvrc"])
    for key in ("cub", "wsol_cub", "wsol_ilsvrc"):
        assert _gt(open_dataset(generated[key])) == _gt(ref), key
    oi = open_dataset(generated["openimages"])
    assert oi.has_masks and _gt(oi) == _gt(open_dataset(generated["multi_ilsvrc"]))
    assert sum(i.ignore is None for i in oi.images) > 0 and sum(i.ignore is not None for i in oi.images) > 0
    assert any(len(i.masks) > 1 for i in oi.images)


def test_describe_reopen_after_a_move(generated, tmp_path: Path) -> None:
    for key in ("cub", "openimages", "ilsvrc"):
        ds = open_dataset(generated[key])
        desc = json.loads(json.dumps(ds.describe()))
        moved = tmp_path / key
        shutil.copytree(generated[key], moved, symlinks=False)
        again = reopen(desc, root=moved)
        assert again.fingerprint() == ds.fingerprint() == desc["fingerprint"], key
        assert again.root == moved.absolute() and again.layout == ds.layout and again.split == ds.split


def _records(path: Path) -> bytes:
    return gzip.decompress((path / "records.csv.gz").read_bytes())


@pytest.mark.slow
def test_same_records_in_every_layout(generated, tmp_path: Path, monkeypatch) -> None:
    """bench run with the shipped GAP demo net: identical records (and wsol sweeps) across layouts."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    from bench.run.engine import RunConfig
    from bench.run.suite import SuiteRequest, run_named_suite

    config = RunConfig(workers=0, batch_size=8, progress=False)
    runs = {}
    for key, suite in (("ilsvrc", "wsol_cub"), ("cub", "wsol_cub"), ("wsol_cub", "wsol_cub"), ("wsol_ilsvrc", "wsol_cub"),
                       ("multi_ilsvrc", "wsol_openimages"), ("openimages", "wsol_openimages")):
        out = tmp_path / key
        run_named_suite(SuiteRequest(suite=suite, models=["simplecnn_gap"], data=generated[key], out=out, step=0.01), config)
        runs[key] = out / suite / "simplecnn_gap"
    for key in ("cub", "wsol_cub", "wsol_ilsvrc"):
        assert _records(runs[key]) == _records(runs["ilsvrc"]), key
        assert (runs[key] / "sweep_curves.csv").read_bytes() == (runs["ilsvrc"] / "sweep_curves.csv").read_bytes(), key
    assert _records(runs["openimages"]) == _records(runs["multi_ilsvrc"])
    sweep = json.loads((runs["openimages"] / "sweep.json").read_text())
    assert sweep["rules"] == "wsol" and sweep["pxap"] is not None and sweep["pxap_images"] == 30
    assert sweep["threshold_chosen_on"].startswith("test")
    assert json.loads((runs["multi_ilsvrc"] / "sweep.json").read_text())["pxap"] is None  # no masks there
    # wsolevaluation's table shape: one row per method, each data set's metric from its sweep.json.
    from bench.cli import main

    table = tmp_path / "wsol_table.csv"
    assert main(["table", "--wsol", "--runs", str(tmp_path / "cub"), str(tmp_path / "openimages"), "--format", "csv", "--out", str(table)]) == 0
    import pandas as pd

    frame = pd.read_csv(table)
    assert frame["label"].tolist() == ["simplecnn_gap"]
    row = frame.iloc[0]
    cub = json.loads((runs["cub"] / "sweep.json").read_text())
    assert row["cub_maxboxacc_v2"] == pytest.approx(round(cub["maxboxacc_v2"], 2))
    assert row["openimages_pxap"] == pytest.approx(round(sweep["pxap"], 2))
    assert pd.isna(row["ilsvrc_maxboxacc_v2"])
    assert "optimistic" in row["threshold_chosen_on"]  # max over tau on the scored split, and it says so
    md = tmp_path / "wsol_table.md"
    assert main(["table", "--wsol", "--runs", str(tmp_path / "cub"), "--format", "md", "--out", str(md)]) == 0
    assert "CUB MaxBoxAccV2" in md.read_text() and "optimistic" in md.read_text()
