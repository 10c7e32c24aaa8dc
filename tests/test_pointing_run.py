"""The pointing suites end to end on the generated multi-label set (bench.data.synthetic_multilabel).

A centre baseline on known geometry gives the hand-computed pointing accuracy; the per-pair hits
of a run equal TorchRay's own ``PointingGameBenchmark`` (its VOC/COCO region and skip rules, its
difficult flags) evaluated on the same data through torchvision's VOCDetection / CocoDetection.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from bench.core.protocol import load_protocol
from bench.data import synthetic_multilabel as G
from bench.data.dataset import DataError
from bench.data.multilabel import load_difficult_flags
from bench.data.readers import coco_instances, voc_detection
from bench.run.pointing import PointingConfig, class_indices, read_pointing_records, run_pointing
from bench.run.results import RunDir


class CentreMaps:
    """A model-free source: a Gaussian bump at the centre of a 101x101 grid (upsampled per image)."""

    name = "centre_gauss"
    input_size = 32
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def maps(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        g = torch.arange(101, dtype=torch.float32) - 50
        bump = torch.exp(-(g[:, None] ** 2 + g[None, :] ** 2) / 400.0)
        return bump.expand(x.shape[0], classes.shape[1], 101, 101).clone()


class CentrePoints(CentreMaps):
    """TorchRay's centre baseline: the point (W/2, H/2)."""

    name = "centre_point"

    def points(self, sizes):
        return torch.tensor([[w / 2, h / 2] for h, w in sizes], dtype=torch.float64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multilabel")
    G.write_voc(root / "VOCdevkit")
    G.write_coco(root / "coco")
    return root


def _run(protocol_name: str, dataset, source, out: Path, flags: Path | None = None, **kw):
    protocol = load_protocol(protocol_name)
    run = RunDir(out / protocol_name / source.name)
    cfg = PointingConfig(progress=False, batch_size=2, shard_size=3, difficult_flags=flags, **kw)
    info = {"name": source.name, "paper_name": None, "family": "centre", "head": "maps", "weights_path": None}
    summary = run_pointing(protocol, dataset, source, class_indices(None, None, dataset, source.name), run, cfg, info)
    return run, summary


# VOC: cat: hit (000001), hit (000002), miss (000004) -> 2/3; dog: miss (000001), hit (000004), 000003's
# only dog box is difficult (skipped) -> 1/2; person: miss (000002: 19.5 px left of the box), hit, hit -> 2/3.
# COCO has no difficult flag: 000003's dog (35 px from the centre) is a miss -> dog 1/3.
HAND = {"voc07": ((2 / 3 + 1 / 2 + 2 / 3) / 3, 5 / 8, 8), "coco14": ((2 / 3 + 1 / 3 + 2 / 3) / 3, 5 / 9, 9)}


@pytest.mark.parametrize("source", [CentreMaps(), CentrePoints()], ids=["gauss-argmax", "point"])
@pytest.mark.parametrize("layout", ["voc07", "coco14"])
def test_centre_baseline_hand_computed(data: Path, tmp_path: Path, source, layout: str) -> None:
    dataset = voc_detection.read(data / "VOCdevkit") if layout == "voc07" else coco_instances.read(data / "coco")
    run, summary = _run(f"pointing_{layout}", dataset, source, tmp_path)
    mean, overall, scored = HAND[layout]
    assert summary["pointing_accuracy"] == pytest.approx(mean, abs=1e-12)
    assert summary["pointing_accuracy_overall"] == pytest.approx(overall, abs=1e-12)
    assert summary["pairs"] == 9 and summary["pairs_scored"] == scored and summary["pointing_classes"] == 3
    recs = read_pointing_records(run.records_path)
    assert len(recs) == dataset.num_pairs  # every (image, class) pair accounted for
    if layout == "voc07":
        skipped = recs[recs["status"] == "skipped"]
        assert list(zip(skipped["image_id"], skipped["class_id"], skipped["reason"])) == [("000003", "dog", "all-boxes-difficult")]
    # resume: a finished run's records are rewritten identically from the shards
    before = run.records_path.read_bytes()
    run.shard_path(1).unlink()
    _run(f"pointing_{layout}", dataset, source, tmp_path)
    assert run.records_path.read_bytes() == before


def test_difficult_subset_from_a_user_flag_file(data: Path, tmp_path: Path) -> None:
    dataset = voc_detection.read(data / "VOCdevkit")
    cat, person = dataset.class_ids.index("cat"), dataset.class_ids.index("person")
    rows = {"000001": [cat], "000002": [], "000003": [], "000005": [person]}  # 000004 unlisted: all its pairs stay
    lines = ["\t".join([i] + ["1" if c in on else "0" for c in range(20)]) for i, on in rows.items()]
    flags = tmp_path / "flags.txt"
    flags.write_text("\n".join(lines) + "\n")
    run, summary = _run("pointing_voc07_difficult", dataset, CentrePoints(), tmp_path, flags)
    # cat: 000001 hit, 000004 miss; dog: 000004 hit; person: 000005 hit
    assert summary["pointing_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    # skipped: 000001 dog, 000002 cat and person, 000003 person (flag 0); 000003 dog (all boxes difficult)
    assert summary["skipped_reasons"] == {"all-boxes-difficult": 1, "not-in-difficult-subset": 4}
    bad = tmp_path / "bad.txt"
    bad.write_text("000001\t1\t0\n")
    with pytest.raises(DataError, match="bad.txt:1"):
        load_difficult_flags("voc07", bad, 20)


def _torchray_hits(data: Path, records, layout: str, difficult: bool) -> dict:
    """TorchRay's PointingGameBenchmark verdict for every pair, at each record's point."""
    from torchvision import datasets as tvd

    pg = pytest.importorskip("torchray.benchmark.pointing_game")
    from torchray.benchmark import datasets as trd

    if layout == "voc07":
        ds = tvd.VOCDetection(str(data), year="2007", image_set="test")
        tr_index = {n: i for i, n in enumerate(trd.VOC_CLASSES)}
    else:
        ds = tvd.CocoDetection(str(data / "coco" / "val2014"), str(data / "coco" / "annotations" / "instances_val2014.json"))
        tr_index = {str(c): i for c, i in trd._COCO_CLASS_TO_INDEX.items()}
    bench = pg.PointingGameBenchmark(ds, difficult=difficult)
    out = {}
    for k in range(len(ds)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _img, label = ds[k]
        if layout == "voc07":
            image_id = label["annotation"]["filename"].split(".")[0]
        else:
            image_id = ds.coco.loadImgs(label[0]["image_id"])[0]["file_name"].split(".")[0]
        mine = records[records["image_id"] == image_id]
        for _, r in mine.iterrows():
            point = (float(r["point_x"]), float(r["point_y"])) if r["point_x"] else (0, 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[(image_id, r["class_id"])] = bench.evaluate(label, tr_index[r["class_id"]], point)
    return out


@pytest.mark.parametrize("layout,difficult", [("voc07", False), ("voc07", True), ("coco14", False)])
def test_pair_verdicts_equal_torchray_benchmark(data: Path, tmp_path: Path, layout: str, difficult: bool) -> None:
    dataset = voc_detection.read(data / "VOCdevkit") if layout == "voc07" else coco_instances.read(data / "coco")
    suite = f"pointing_{layout}" + ("_difficult" if difficult else "")
    # TorchRay's shipped flags name the real VOC07 test images 000001..000005 too: the same list here
    run, _ = _run(suite, dataset, CentreMaps(), tmp_path)
    recs = read_pointing_records(run.records_path)
    ref = _torchray_hits(data, recs, layout, difficult)
    mine = {(r["image_id"], r["class_id"]): (0 if r["status"] == "skipped" else (1 if r["hit"] == "1" else -1)) for _, r in recs.iterrows()}
    assert mine == ref
    assert set(mine.values()) >= {1, -1}


MODEL_FILE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def voc():
    torch.manual_seed(0)
    return Net(20)


def wrong():
    return Net(7)
'''


def test_cli_run_writes_every_pair_and_refuses_a_model_with_other_classes(data: Path, tmp_path: Path, capsys) -> None:
    from bench.cli import main

    model = tmp_path / "netfile.py"
    model.write_text(MODEL_FILE)
    out = tmp_path / "results"
    common = ["--data", str(data / "VOCdevkit"), "--out", str(out), "--workers", "0", "--no-progress", "--input-size", "64"]
    assert main(["run", "--suite", "pointing_voc07", "--model", f"{model}:voc", "--label", "tiny net", *common]) == 0
    run_dir = next((out / "pointing_voc07").iterdir())
    recs = read_pointing_records(run_dir / "records.csv.gz")
    assert len(recs) == 9 and set(recs["status"]) == {"scored", "skipped"}
    scored = recs[recs["status"] == "scored"]
    # an untrained net's CAM may be all negative: energy undefined (NaN), never outside [0, 1]
    assert scored["energy_pointing_game"].dropna().between(0, 1).all() and scored["localisation_auc"].between(0, 1).all()
    assert "pointing accuracy" in capsys.readouterr().out
    assert main(["table", "--pointing", "--runs", str(out), "--format", "csv"]) == 0
    assert "tiny net" in capsys.readouterr().out
    assert main(["run", "--suite", "pointing_voc07", "--model", f"{model}:wrong", *common]) == 2
    assert "predicts 7 classes" in capsys.readouterr().err
    assert not (out / "pointing_voc07" / "netfile.wrong").exists()


def test_pointing_table_torchray_shape(data: Path, tmp_path: Path) -> None:
    import pandas as pd

    from bench.cli import main

    _run("pointing_voc07", voc_detection.read(data / "VOCdevkit"), CentrePoints(), tmp_path)
    _run("pointing_coco14", coco_instances.read(data / "coco"), CentrePoints(), tmp_path)
    out = tmp_path / "t.csv"
    assert main(["table", "--pointing", "--with-torchray", "--runs", str(tmp_path), "--format", "csv", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    mine = frame[frame["label"] == "centre_point"].iloc[0]
    assert mine["voc07_all"] == pytest.approx(round(100 * HAND["voc07"][0], 1))
    assert mine["coco14_all"] == pytest.approx(round(100 * HAND["coco14"][0], 1))
    assert pd.isna(mine["voc07_difficult"])
    centre = frame[frame["label"] == "center, vgg16 (TorchRay)"].iloc[0]
    assert (centre["voc07_all"], centre["voc07_difficult"], centre["coco14_all"], centre["coco14_difficult"]) == (69.6, 42.4, 27.8, 19.5)
    # pointing runs are no rows of the CAM paper's tables
    assert main(["table", "--paper", "2", "--runs", str(tmp_path)]) == 2


@pytest.mark.parametrize("layout", ["voc07", "coco14"])
def test_cli_model_center_is_torchrays_centre_baseline(data: Path, tmp_path: Path, layout: str) -> None:
    """`--model center` on a pointing suite: TorchRay's (W/2, H/2) point, the hand-computed accuracy."""
    from bench.cli import main

    root = data / ("VOCdevkit" if layout == "voc07" else "coco")
    out = tmp_path / "results"
    assert main(["run", "--suite", f"pointing_{layout}", "--model", "center", "--data", str(root), "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    summary = json.loads((out / f"pointing_{layout}" / "center" / "summary.json").read_text())
    mean, overall, scored = HAND[layout]
    assert summary["pointing_accuracy"] == pytest.approx(mean, abs=1e-12)
    assert summary["pointing_accuracy_overall"] == pytest.approx(overall, abs=1e-12)
    assert summary["pairs_scored"] == scored
