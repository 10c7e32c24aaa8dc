"""Tests for bench.data.classes, bench.data.dataset, bench.data.open, bench.data.readers and bench.data.fixtures.

Box convention everywhere: xyxy, 0-based, inclusive pixel indices, never shifted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.data.classes import (
    load_class_names,
    load_wnids,
    read_synset_mapping,
    wnid_to_index,
)
from bench.data.fixtures import class_colour, generated_samples, write_ilsvrc_layout
from bench.data.dataset import DataError, Dataset, Problem, read_blacklist
from bench.data.open import detect_layout, open_dataset, read_gt
from bench.resources import resource_path

TENCH, GOLDFISH, SHARK = "n01440764", "n01443537", "n01484850"
KIT_FOX = "n02119789"
ID = "ILSVRC2012_val_{:08d}".format


# --------------------------------------------------------------------------- helpers


def touch_images(folder: Path, ids, ext: str = ".JPEG", size=(8, 6)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.new("RGB", size).save(folder / f"{i}{ext}")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def voc_xml(filename: str, objects) -> str:
    objs = "".join(
        f"<object><name>{w}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for w, (a, b, c, d) in objects
    )
    return (
        f"<annotation><folder>val</folder><filename>{filename}</filename>"
        f"<size><width>500</width><height>375</height><depth>3</depth></size>{objs}</annotation>"
    )


def content(vs: Dataset):
    return [(im.image_id, im.label, im.boxes.tolist()) for im in vs.images]


def kinds(err: DataError) -> list[str]:
    return sorted(p.kind for p in err.problems)


# --------------------------------------------------------------------------- classes


def test_sorted_wnid_class_index():
    wnids = load_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    assert wnids[0] == TENCH and wnids[999] == "n15075141"
    idx = wnid_to_index()
    assert idx[TENCH] == 0 and idx["n15075141"] == 999
    # devkit ILSVRC2012_ID 1 is kit fox; in torchvision (sorted) order it is 278
    assert idx[KIT_FOX] == 278
    names = load_class_names()
    assert names[0] == "tench" and names[278] == "kit fox" and names[1] == "goldfish"
    # the shipped box table agrees: devkit_id 1 rows carry n02119789 / torchvision 278
    df = pd.read_csv(
        resource_path("ilsvrc2012_val_boxes.csv.gz"), usecols=["devkit_id", "torchvision_idx", "wnid"]
    )
    dev1 = df[df.devkit_id == 1]
    assert set(dev1.wnid) == {KIT_FOX} and set(dev1.torchvision_idx) == {278}
    # and the whole torchvision_idx column is the sorted-WNID position
    assert (df.wnid.map(idx) == df.torchvision_idx).all()
    # returned containers are copies (cache cannot be corrupted)
    load_wnids().clear()
    wnid_to_index().clear()
    assert len(load_wnids()) == 1000 and len(wnid_to_index()) == 1000


def test_read_synset_mapping_sorts_and_validates(tmp_path):
    # lines in devkit-like (unsorted) order: the index must follow sorted order
    p = write(
        tmp_path / "LOC_synset_mapping.txt",
        f"{KIT_FOX} kit fox, Vulpes macrotis\n{SHARK} great white shark\n\n{TENCH} tench, Tinca tinca\n",
    )
    assert read_synset_mapping(p) == [TENCH, SHARK, KIT_FOX]
    bad = write(tmp_path / "bad.txt", f"{TENCH} tench\nfoo bar\n{TENCH} again\n")
    with pytest.raises(ValueError) as e:
        read_synset_mapping(bad)
    msg = str(e.value)
    assert "bad.txt:2" in msg and "bad.txt:3" in msg  # both problems listed


# --------------------------------------------------------------------------- fixtures + layouts


@pytest.fixture(scope="module")
def samples():
    return generated_samples(12, seed=7, wnids=[TENCH, GOLDFISH, SHARK, KIT_FOX])


@pytest.fixture(scope="module")
def roots(samples, tmp_path_factory):
    return write_ilsvrc_layout(tmp_path_factory.mktemp("flat"), samples)


def test_generated_samples_deterministic_and_tight(samples):
    again = generated_samples(12, seed=7, wnids=[TENCH, GOLDFISH, SHARK, KIT_FOX])
    for (i1, a1, w1, b1), (i2, a2, w2, b2) in zip(samples, again):
        assert i1 == i2 and w1 == w2 and np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert samples[0][0] == ID(1) and samples[-1][0] == ID(12)
    for _, img, wnid, boxes in samples:
        h, w = img.shape[:2]
        assert 48 <= h <= 120 and 64 <= w <= 160 and img.dtype == np.uint8
        assert 1 <= len(boxes) <= 3
        colour = np.array(class_colour(wnid))
        painted = (img == colour).all(axis=2)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
        # union of the boxes is exactly the bounding extent of the class-coloured pixels
        ys, xs = np.nonzero(painted)
        assert xs.min() == boxes[:, 0].min() and xs.max() == boxes[:, 2].max()
        assert ys.min() == boxes[:, 1].min() and ys.max() == boxes[:, 3].max()
    other = generated_samples(12, seed=8, wnids=[TENCH, GOLDFISH, SHARK, KIT_FOX])
    assert any(a.shape != b[1].shape for (_, a, _, _), b in zip(other, samples))


def test_three_layouts_identical(samples, roots):
    idx = wnid_to_index()
    expected = [(sid, idx[w], b.tolist()) for sid, _, w, b in samples]
    loaded = {}
    for layout, root in roots.items():
        assert detect_layout(root) == layout
        vs = open_dataset(root)
        assert vs.layout == layout and vs.class_ids == tuple(load_wnids())
        assert content(vs) == expected
        for im in vs.images:
            assert im.path.is_absolute() and im.path.is_file() and im.path.stem == im.image_id
            assert im.boxes.dtype == np.int64 and im.boxes.shape[1] == 4
            assert not im.boxes.flags.writeable
        loaded[layout] = vs
    fps = {vs.fingerprint() for vs in loaded.values()}
    assert len(fps) == 1 and len(fps.pop()) == 64
    assert loaded["voc"].num_boxes == sum(len(b) for *_, b in samples)


def test_class_subfolders_and_png_identical(samples, roots, tmp_path):
    flat = open_dataset(roots["csv"])
    sub = write_ilsvrc_layout(tmp_path / "sub", samples, class_subfolders=True)
    png = write_ilsvrc_layout(tmp_path / "png", samples, layouts=("wsol",), image_ext=".png")
    for layout, root in sub.items():
        vs = open_dataset(root)
        assert content(vs) == content(flat) and vs.fingerprint() == flat.fingerprint()
        assert all(im.path.parent.name == vs.class_ids[im.label] for im in vs.images)
    vs = open_dataset(png["wsol"])
    assert vs.fingerprint() == flat.fingerprint()
    assert all(im.path.suffix == ".png" for im in vs.images)
    # lossless PNG keeps the exact pixels
    assert np.array_equal(np.asarray(Image.open(vs.images[0].path)), samples[0][1])


def test_fingerprint_sensitivity(samples, roots, tmp_path):
    base = open_dataset(roots["voc"])
    assert open_dataset(roots["voc"], blacklist=[1]).fingerprint() != base.fingerprint()
    changed = [(i, a, w, b.copy()) for i, a, w, b in samples]
    changed[3][3][0, 0] += 1
    other = open_dataset(write_ilsvrc_layout(tmp_path / "x", changed, layouts=("csv",))["csv"])
    assert other.fingerprint() != base.fingerprint()


# --------------------------------------------------------------------------- hand-written files


def test_csv_hand_written(tmp_path):
    root = tmp_path / "csvroot"
    write(
        root / "LOC_val_solution.csv",
        "ImageId,PredictionString\n"
        f"{ID(3)},{KIT_FOX} 0 0 4 9 \n"
        f"{ID(1)},{SHARK} 10 20 30 40 {SHARK} 1 2 3 4\n"
        f"{ID(2)},{TENCH} 5 6 7 8\n",
    )
    touch_images(root / "val", [ID(1), ID(2), ID(3)], size=(64, 48))
    vs = open_dataset(root)
    assert vs.layout == "csv"
    # no LOC_synset_mapping.txt -> shipped 1000 classes; rows re-sorted by id, box order kept
    assert content(vs) == [
        (ID(1), 2, [[10, 20, 30, 40], [1, 2, 3, 4]]),
        (ID(2), 0, [[5, 6, 7, 8]]),
        (ID(3), 278, [[0, 0, 4, 9]]),
    ]
    gt = read_gt(root, "csv")
    assert set(gt.records) == {ID(1), ID(2), ID(3)} and gt.num_boxes == 4
    # a custom class list (LOC_synset_mapping.txt, unsorted lines) -> sorted positions
    write(root / "LOC_synset_mapping.txt", f"{KIT_FOX} kit fox\n{TENCH} tench\n{SHARK} shark\n")
    vs2 = open_dataset(root)
    assert vs2.class_ids == (TENCH, SHARK, KIT_FOX)
    assert [im.label for im in vs2.images] == [1, 0, 2]
    assert vs2.fingerprint() != vs.fingerprint()  # class list is part of the GT content


def test_voc_hand_written(tmp_path):
    root = tmp_path / "vocroot"
    ann = root / "bbox_val"
    write(ann / f"{ID(5)}.xml", voc_xml(ID(5), [(GOLDFISH, (0, 0, 499, 374)), (GOLDFISH, (17, 3, 17, 3))]))
    write(ann / f"{ID(6)}.xml", voc_xml(ID(6) + ".JPEG", [(TENCH, (2, 4, 6, 8))]))
    touch_images(root / "images", [ID(5)], ext=".jpg")
    touch_images(root / "images", [ID(6)], ext=".JPEG")
    vs = open_dataset(root)
    assert vs.layout == "voc"
    assert content(vs) == [(ID(5), 1, [[0, 0, 499, 374], [17, 3, 17, 3]]), (ID(6), 0, [[2, 4, 6, 8]])]
    assert vs.images[0].path == (root / "images" / f"{ID(5)}.jpg").absolute()


def test_wsol_hand_written(tmp_path):
    root = tmp_path / "wsolroot"
    # metadata directly in root; boxes of one image interleaved with another's
    write(root / "image_ids.txt", f"val/{ID(8)}.JPEG\nval/{ID(7)}.JPEG\n")
    write(root / "class_labels.txt", f"val/{ID(8)}.JPEG,999\nval/{ID(7)}.JPEG,278\n")
    write(
        root / "localization.txt",
        f"val/{ID(7)}.JPEG,1,2,3,4\n" + f"val/{ID(8)}.JPEG,0,0,1,1\n" + f"val/{ID(7)}.JPEG,5,6,7,8\n",
    )
    touch_images(root / "val", [ID(7), ID(8)], size=(64, 48))
    vs = open_dataset(root)
    assert vs.layout == "wsol"
    assert content(vs) == [(ID(7), 278, [[1, 2, 3, 4], [5, 6, 7, 8]]), (ID(8), 999, [[0, 0, 1, 1]])]
    assert vs.class_ids[999] == "n15075141"


def test_detect_layout_ambiguous_and_missing(tmp_path, roots):
    root = tmp_path / "both"
    write(root / "LOC_val_solution.csv", f"ImageId,PredictionString\n{ID(1)},{TENCH} 1 2 3 4\n")
    write(root / "metadata" / "localization.txt", f"val/{ID(1)}.JPEG,1,2,3,4\n")
    with pytest.raises(DataError) as e:
        detect_layout(root)
    assert "layout=" in str(e.value) and "csv" in str(e.value) and "wsol" in str(e.value)
    with pytest.raises(DataError):
        open_dataset(root)
    with pytest.raises(DataError) as e:
        detect_layout(tmp_path)
    assert kinds(e.value) == ["no-annotations"]


def test_blacklist_ids_and_numbers(tmp_path, roots):
    bl = write(tmp_path / "bl.txt", f"# devkit blacklist\n3\n{ID(5)}\n\n  11  \n40000\n")
    vs = open_dataset(roots["csv"], blacklist=bl)
    # 40000 is not in the 12-image set: ignored; the images stay in the set
    assert vs.blacklisted == frozenset({ID(3), ID(5), ID(11)})
    assert len(vs) == 12
    assert read_blacklist([36, "ILSVRC2012_val_00000037"]) == {ID(36), ID(37)}
    with pytest.raises(DataError) as e:
        read_blacklist([0, -3, ID(2), "7"])
    assert kinds(e.value) == ["bad-blacklist", "bad-blacklist"]  # 0 and -3 (indices are 1-based)
    with pytest.raises(DataError) as e:
        open_dataset(roots["csv"], blacklist=tmp_path / "nope.txt")
    assert "nope.txt" in str(e.value)


# --------------------------------------------------------------------------- errors


def test_csv_errors_all_listed(tmp_path):
    root = tmp_path / "bad"
    write(
        root / "LOC_val_solution.csv",
        "ImageId,PredictionString\n"
        f"{ID(1)},{TENCH} 1 2 3 4\n"  # fine, but no image file
        f"{ID(2)},n99999999 1 2 3 4\n"  # unknown WNID
        f"{ID(3)},{TENCH} 9 2 3 4\n"  # xmin > xmax
        f"{ID(4)},{TENCH} 1 2 3\n"  # 4 fields
        f"{ID(6)},{TENCH} 1 2 3 4 {GOLDFISH} 1 2 3 4\n"  # two classes
        f"{ID(7)},{TENCH} 1 2 3 4\n"
        f"{ID(7)},{TENCH} 1 2 3 4\n",
    )  # duplicated id
    touch_images(root / "val", [ID(2), ID(3), ID(4), ID(6), ID(7), ID(99)])  # 99 unannotated
    with pytest.raises(DataError) as e:
        open_dataset(root)
    err = e.value
    assert isinstance(err, ValueError)
    assert kinds(err) == sorted(
        [
            "missing-image",
            "unknown-wnid",
            "bad-box",
            "bad-row",
            "mixed-classes",
            "duplicate-id",
            "unannotated-image",
        ]
    )
    msg = str(err)
    assert msg.startswith("7 problems")
    for needle in (
        f"{ID(1)}.JPEG",
        "n99999999",
        "xmin > xmax",
        "has 4 fields",
        f"{ID(99)}.JPEG",
        "LOC_val_solution.csv:4",
        "LOC_val_solution.csv:5",
        "images=",
        "Fix:",
    ):
        assert needle in msg, needle
    # GT-only parse reports the GT problems, not image ones
    with pytest.raises(DataError) as e:
        read_gt(root)
    assert "missing-image" not in kinds(e.value) and len(e.value.problems) == 5


def test_voc_errors_all_listed(tmp_path):
    root = tmp_path / "vocbad"
    ann = root / "Annotations" / "CLS-LOC" / "val"
    write(ann / f"{ID(1)}.xml", voc_xml(ID(1), [(TENCH, (1, 2, 3, 4))])[:-5])  # truncated
    write(ann / f"{ID(2)}.xml", voc_xml(ID(2), [(TENCH, (5, 9, 6, 8))]))  # ymin > ymax
    write(ann / f"{ID(3)}.xml", voc_xml(ID(3), [("n00000001", (1, 1, 2, 2))]))
    write(ann / f"{ID(4)}.xml", '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotation/>')
    write(ann / f"{ID(5)}.xml", voc_xml(ID(5), []))  # no objects
    write(ann / f"{ID(6)}.xml", voc_xml(ID(6), [(TENCH, (-1, 0, 3, 3))]))  # negative
    write(ann / f"{ID(7)}.xml", voc_xml(ID(8), [(TENCH, (0, 0, 3, 3))]))  # filename mismatch
    touch_images(root / "val", [ID(i) for i in range(1, 8)])
    with pytest.raises(DataError) as e:
        open_dataset(root)
    assert kinds(e.value) == sorted(
        ["malformed-xml", "bad-box", "unknown-wnid", "unsafe-xml", "no-boxes", "bad-box", "id-mismatch"]
    )
    msg = str(e.value)
    for i in range(1, 8):
        assert f"{ID(i)}.xml" in msg
    assert "ymin > ymax" in msg and "negative coordinate" in msg and "malformed XML" in msg


def test_wsol_errors_all_listed(tmp_path):
    root = tmp_path / "wsolbad"
    meta = root / "metadata"
    write(meta / "image_ids.txt", f"val/{ID(1)}.JPEG\nval/{ID(2)}.JPEG\nval/{ID(3)}.JPEG\n")
    write(meta / "class_labels.txt", f"val/{ID(1)}.JPEG,1000\nval/{ID(2)}.JPEG,0\nval/{ID(3)}.JPEG,0\n")
    write(
        meta / "localization.txt",
        f"val/{ID(1)}.JPEG,1,2,3,4\nval/{ID(2)}.JPEG,1,2,3\n"
        f"val/{ID(9)}.JPEG,1,2,3,4\nval/{ID(3)}.JPEG,4,2,3,4\n",
    )
    touch_images(root / "val", [ID(1), ID(2), ID(3)])
    with pytest.raises(DataError) as e:
        open_dataset(root)
    assert kinds(e.value) == sorted(["bad-label", "bad-line", "unknown-image", "bad-box", "no-boxes"])
    msg = str(e.value)
    assert "class_labels.txt:1" in msg and "localization.txt:2" in msg and "localization.txt:3" in msg


def test_wrong_class_folder_and_duplicate_image(tmp_path):
    root = tmp_path / "folders"
    write(
        root / "LOC_val_solution.csv",
        f"ImageId,PredictionString\n{ID(1)},{TENCH} 1 2 3 4\n{ID(2)},{TENCH} 1 1 2 2\n",
    )
    touch_images(root / "val" / GOLDFISH, [ID(1)])
    touch_images(root / "val" / TENCH, [ID(2)])
    touch_images(root / "val", [ID(2)], ext=".png")
    with pytest.raises(DataError) as e:
        open_dataset(root)
    assert kinds(e.value) == ["duplicate-image", "label-mismatch"]


def test_images_dir_argument(tmp_path):
    root = tmp_path / "r"
    write(root / "LOC_val_solution.csv", f"ImageId,PredictionString\n{ID(1)},{TENCH} 1 2 3 4\n")
    elsewhere = tmp_path / "imgs"
    touch_images(elsewhere, [ID(1)])
    with pytest.raises(DataError) as e:
        open_dataset(root)
    assert kinds(e.value) == ["missing-image"]
    vs = open_dataset(root, images=elsewhere)
    assert vs.images[0].path == elsewhere / f"{ID(1)}.JPEG"


def test_data_error_message_caps_but_keeps_all():
    probs = [Problem("missing-image", f"f{i}", "gone", "restore it") for i in range(DataError.MAX_LINES + 5)]
    err = DataError(probs)
    msg = str(err)
    assert len(err.problems) == DataError.MAX_LINES + 5
    assert "f0: gone" in msg and f"f{DataError.MAX_LINES - 1}:" in msg
    assert f"f{DataError.MAX_LINES}:" not in msg and "5 more problems" in msg and "missing-image: 5" in msg


# --------------------------------------------------------------------------- property + full scale


_box = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)).map(
    lambda t: (min(t[0], t[2]), min(t[1], t[3]), max(t[0], t[2]), max(t[1], t[3]))
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.integers(1, 50000),
        st.tuples(st.integers(0, 999), st.lists(_box, min_size=1, max_size=5)),
        min_size=1,
        max_size=8,
    )
)
def test_csv_and_wsol_roundtrip_property(tmp_path_factory, gt):
    wnids = load_wnids()
    root = tmp_path_factory.mktemp("prop")
    rows = [
        f"{ID(k)},{''.join(f'{wnids[c]} {a} {b} {x} {y} ' for a, b, x, y in boxes)}"
        for k, (c, boxes) in gt.items()
    ]
    write(root / "csv" / "LOC_val_solution.csv", "ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    m = root / "wsol" / "metadata"
    write(m / "image_ids.txt", "".join(f"val/{ID(k)}.JPEG\n" for k in gt))
    write(m / "class_labels.txt", "".join(f"val/{ID(k)}.JPEG,{c}\n" for k, (c, _) in gt.items()))
    write(
        m / "localization.txt",
        "".join(f"val/{ID(k)}.JPEG,{a},{b},{x},{y}\n" for k, (_, bx) in gt.items() for a, b, x, y in bx),
    )
    for layout in ("csv", "wsol"):
        got = read_gt(root / layout)
        assert got.layout == layout
        assert {k: (lab, b.tolist()) for k, (lab, b) in got.records.items()} == {
            ID(k): (c, [list(b) for b in boxes]) for k, (c, boxes) in gt.items()
        }


def test_full_scale_csv(tmp_path):
    """The real 50,000-image / 80,477-box GT, as a shuffled Kaggle CSV, parses fast and exactly."""
    ref = pd.read_csv(resource_path("ilsvrc2012_val_boxes.csv.gz"))
    coords = ref[["xmin", "ymin", "xmax", "ymax"]].astype(str)
    ref_str = ref.wnid + " " + coords.xmin + " " + coords.ymin + " " + coords.xmax + " " + coords.ymax + " "
    sol = ref_str.groupby(ref.image_id, sort=False).agg("".join)
    sol = sol.sample(frac=1.0, random_state=0)  # rows in any order
    pd.DataFrame({"ImageId": sol.index, "PredictionString": sol.to_numpy()}).to_csv(
        tmp_path / "LOC_val_solution.csv", index=False
    )

    gt = read_gt(tmp_path, "csv")
    assert len(gt.records) == 50_000 and gt.num_boxes == 80_477
    ids = sorted(gt.records)
    assert ids[0] == ID(1) and ids[-1] == ID(50000)
    labels = np.array([gt.records[i][0] for i in ids])
    first = ref.groupby("image_id", sort=True).torchvision_idx.first()
    assert np.array_equal(labels, first.loc[ids].to_numpy())
    boxes = np.concatenate([gt.records[i][1] for i in ids])
    ref_sorted = ref.sort_values("image_id", kind="stable")
    assert np.array_equal(boxes, ref_sorted[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.int64))
    assert max(len(gt.records[i][1]) for i in ids) == 20
    assert gt.records[ID(756)][0] == 278  # a devkit id 1 (kit fox) image


def _wsol_in_folders(root: Path, placed: list[tuple[str, str, int]]) -> None:
    """wsol metadata for images ``test/<folder>/<id>.JPEG`` labelled as given."""
    lines = [f"test/{folder}/{i}.JPEG" for i, folder, _ in placed]
    write(root / "metadata" / "image_ids.txt", "\n".join(lines) + "\n")
    write(root / "metadata" / "class_labels.txt", "".join(f"{p},{lab}\n" for p, (_, _, lab) in zip(lines, placed)))
    write(root / "metadata" / "localization.txt", "".join(f"{p},1,1,3,3\n" for p in lines))
    for i, folder, _ in placed:
        touch_images(root / "test" / folder, [i])


def test_wnid_folders_one_to_one_with_labels_in_another_order_are_the_classes(tmp_path):
    """An ImageNet subset labelled 0..K-1 in its own order (issue 19 item 7): each image's class is its
    folder, so an ImageNet model (outputs in sorted-WNID order) is scored against the right output."""
    from bench.data.classes import load_wnids

    placed = [(ID(1), SHARK, 0), (ID(2), TENCH, 1), (ID(3), SHARK, 0), (ID(4), GOLDFISH, 2)]
    _wsol_in_folders(tmp_path / "sub", placed)
    vs = open_dataset(tmp_path / "sub")
    assert tuple(vs.class_ids) == tuple(load_wnids())
    wnids = list(load_wnids())
    assert [(g.image_id, vs.class_ids[g.label]) for g in vs.images] == [(i, folder) for i, folder, _ in placed]
    assert [g.label for g in vs.images] == [wnids.index(SHARK), 0, wnids.index(SHARK), 1]
    # WordNet-named folders that are not ImageNet's: the folders, in label order, are the class list
    other = [(ID(1), "n90000002", 0), (ID(2), "n90000001", 1)]
    _wsol_in_folders(tmp_path / "gen", other)
    vs = open_dataset(tmp_path / "gen")
    assert tuple(vs.class_ids) == ("n90000002", "n90000001") and [g.label for g in vs.images] == [0, 1]


def test_wnid_folders_that_contradict_the_labels_are_refused(tmp_path):
    # one folder holding two labels
    _wsol_in_folders(tmp_path / "a", [(ID(1), SHARK, 0), (ID(2), SHARK, 1), (ID(3), TENCH, 2)])
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "a")
    assert "label-mismatch" in kinds(e.value) and f"is in class folder {SHARK} but labelled 1" in str(e.value)
    # one label in two folders
    _wsol_in_folders(tmp_path / "b", [(ID(1), SHARK, 0), (ID(2), TENCH, 0), (ID(3), GOLDFISH, 1)])
    with pytest.raises(DataError) as e:
        open_dataset(tmp_path / "b")
    assert "label-mismatch" in kinds(e.value)
