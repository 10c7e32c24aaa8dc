"""Checks of the hand-labelled real-photo fixture (bench/data/photos.py)."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("skimage")

from bench.data.photos import (  # noqa: E402
    PHOTO_SIZES,
    PHOTOS,
    skimage_data_dir,
    write_real_photo_val,
    write_real_photo_val_csv,
)

WNIDS_TXT = Path(__file__).resolve().parents[1] / "bench" / "resources" / "imagenet_wnids.txt"
GRAY = {"camera.png", "clock_motion.png"}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("real_photos")
    write_real_photo_val_csv(base)  # writes both roots
    return base


def test_table_is_sane():
    wnids = {line.split()[0] for line in WNIDS_TXT.read_text(encoding="utf-8").splitlines() if line}
    assert len(wnids) == 1000
    assert len(PHOTOS) >= 8
    ids = [p.image_id for p in PHOTOS]
    assert len(set(ids)) == len(ids) and set(ids) == set(PHOTO_SIZES)
    assert all(i.startswith("PHOTO_val_") and len(i) == len("PHOTO_val_00000001") for i in ids)
    assert len({p.file for p in PHOTOS}) == len(PHOTOS)  # distinct photographs
    assert len({p.wnid for p in PHOTOS}) == len(PHOTOS)  # distinct classes
    assert all(p.wnid in wnids for p in PHOTOS)
    assert all(p.note for p in PHOTOS)


@pytest.mark.parametrize("photo", PHOTOS, ids=[p.file for p in PHOTOS])
def test_boxes_inside_source_photo(photo):
    with Image.open(skimage_data_dir() / photo.file) as im:
        w, h = im.size
    assert (w, h) == PHOTO_SIZES[photo.image_id]
    assert photo.boxes
    for box in photo.boxes:
        assert len(box) == 4 and all(isinstance(v, int) for v in box)
        xmin, ymin, xmax, ymax = box
        assert 0 <= xmin < xmax <= w - 1, box  # non-empty, inclusive coords
        assert 0 <= ymin < ymax <= h - 1, box


def test_voc_root(out):
    root = out / "voc"
    assert root == write_real_photo_val(out)  # idempotent, same root
    assert not (root / "LOC_val_solution.csv").exists()  # exactly one GT layout per root
    for photo in PHOTOS:
        img_path = root / "val" / f"{photo.image_id}.JPEG"
        with Image.open(img_path) as im:
            assert im.format == "JPEG"
            im.load()
            assert im.size == PHOTO_SIZES[photo.image_id]
            assert im.mode == ("L" if photo.file in GRAY else "RGB")
            size, mode = im.size, im.mode

        xml = ET.parse(root / "Annotations" / "CLS-LOC" / "val" / f"{photo.image_id}.xml").getroot()
        assert xml.tag == "annotation"
        assert xml.findtext("filename") == photo.image_id
        assert (int(xml.findtext("size/width")), int(xml.findtext("size/height"))) == size
        assert int(xml.findtext("size/depth")) == (1 if mode == "L" else 3)
        objs = xml.findall("object")
        assert [o.findtext("name") for o in objs] == [photo.wnid] * len(photo.boxes)
        got = [
            tuple(int(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")) for o in objs
        ]
        assert got == list(photo.boxes)


def test_csv_root(out):
    root = out / "csv"
    assert not (root / "Annotations").exists()
    link = root / "val"
    assert link.is_dir()
    if link.is_symlink():  # copied instead where symlinks are unavailable
        assert link.resolve() == (out / "voc" / "val").resolve()
    mapping = (root / "LOC_synset_mapping.txt").read_text(encoding="utf-8")
    assert mapping == WNIDS_TXT.read_text(encoding="utf-8")
    with open(root / "LOC_val_solution.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["ImageId"] for r in rows] == [p.image_id for p in PHOTOS]
    for row, photo in zip(rows, PHOTOS):
        toks = row["PredictionString"].split()
        assert len(toks) == 5 * len(photo.boxes)
        groups = [toks[i : i + 5] for i in range(0, len(toks), 5)]
        assert [g[0] for g in groups] == [photo.wnid] * len(photo.boxes)
        assert [tuple(map(int, g[1:])) for g in groups] == list(photo.boxes)
        assert (root / "val" / f"{photo.image_id}.JPEG").is_file()
