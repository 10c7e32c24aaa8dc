"""Tests for the generated localization dataset (bench/data/synthetic.py).

Boxes everywhere: xyxy, 0-based, inclusive pixel indices.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.classes import WNID_RE, read_synset_mapping, read_synset_names
from bench.data.open import detect_layout, open_dataset
from bench.data.synthetic import (
    CLASS_NAMES,
    DATASET_VERSION,
    WNIDS,
    SynthConfig,
    dataset_digest,
    default_cache_dir,
    ensure_dataset,
    generate,
    mask_path,
    render_sample,
    train_root,
    val_root,
    verify_dataset,
)

SMALL = SynthConfig(seed=7, classes=6, train_per_class=4, val_per_class=8)


def _bbox(mask: np.ndarray) -> list[int]:
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file (content) and symlink (target) under root, by relative path."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = b"->" + os.readlink(p).encode()
            elif p.is_file():
                out[rel] = p.read_bytes()
    return out


def _timed_generate(out: Path, config: SynthConfig, **kw) -> Path:
    t0 = time.perf_counter()
    generate(out, config, **kw)
    n = config.count("train") + config.count("val")
    dt = time.perf_counter() - t0
    print(f"\ngenerate {n} images ({kw or 'default workers'}): {dt:.2f} s, {1000 * dt / n:.1f} ms/image")
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return _timed_generate(tmp_path_factory.mktemp("synth") / "a", SMALL, workers=1)


# --------------------------------------------------------------------------- config / API


def test_class_list():
    assert len(CLASS_NAMES) == len(WNIDS) >= 10
    assert list(WNIDS) == sorted(WNIDS) and all(WNID_RE.match(w) for w in WNIDS)
    assert WNIDS[0] == "n90000001"
    cfg = SynthConfig(classes=3)
    assert cfg.wnids == WNIDS[:3] and cfg.class_names == CLASS_NAMES[:3]
    assert isinstance(DATASET_VERSION, int)


@pytest.mark.parametrize(
    "kw",
    [
        {"seed": -1},
        {"classes": 0},
        {"classes": len(CLASS_NAMES) + 1},
        {"val_per_class": 0},
        {"train_per_class": -1},
        {"min_side": 200, "max_side": 100},
        {"min_side": 8},
        {"multi_instance_prob": 1.5},
        {"classes": 2.0},
        {"seed": True},
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError, match="invalid SynthConfig"):
        SynthConfig(**kw)


def test_roots(tmp_path):
    assert val_root(tmp_path) == tmp_path / "csv"
    assert val_root(tmp_path, "voc") == tmp_path / "voc"
    assert train_root(tmp_path) == tmp_path / "train"
    assert mask_path(tmp_path, "SYNTH_val_00000001") == tmp_path / "masks" / "SYNTH_val_00000001.png"
    with pytest.raises(ValueError):
        val_root(tmp_path, "wsol")


# --------------------------------------------------------------------------- determinism


def test_byte_identical_for_same_seed_and_any_workers(small, tmp_path):
    # a second generation, rendered by 2 worker processes, must match byte for byte
    other = _timed_generate(tmp_path / "b", SMALL, workers=2)
    a, b = _tree_bytes(small), _tree_bytes(other)
    assert sorted(a) == sorted(b)
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, diff[:10]
    assert len(a) > 2 * (SMALL.count("train") + SMALL.count("val"))  # images + masks + xml + ...
    assert verify_dataset(small) and verify_dataset(other)


def test_different_seed_differs(small, tmp_path):
    cfg = SynthConfig(seed=8, classes=6, train_per_class=4, val_per_class=8)
    other = generate(tmp_path / "c", cfg)
    a, b = _tree_bytes(small), _tree_bytes(other)
    imgs = [k for k in a if k.endswith(".JPEG") and not os.path.islink(small / k)]
    assert imgs and all(a[k] != b[k] for k in imgs)
    ma = json.loads(a["dataset.json"])
    mb = json.loads(b["dataset.json"])
    assert ma["sha256"] != mb["sha256"]


def test_image_independent_of_dataset_size(small, tmp_path):
    """Image i depends on (seed, split, i) only, not on how many images are generated."""
    cfg = SynthConfig(seed=7, classes=6, train_per_class=1, val_per_class=2)
    other = generate(tmp_path / "d", cfg)
    a, b = _tree_bytes(small), _tree_bytes(other)
    shared = [k for k in b if k.startswith(("val/", "masks/", "train/")) and k.endswith((".JPEG", ".png"))]
    assert len(shared) == 2 * (cfg.count("train") + cfg.count("val"))  # images + masks
    assert all(a[k] == b[k] for k in shared)
    s1 = render_sample(SMALL, "val", 5)
    s2 = render_sample(SMALL, "val", 5)
    assert np.array_equal(s1.image, s2.image) and np.array_equal(s1.boxes, s2.boxes)


# --------------------------------------------------------------------------- layout / readers


def test_load_val_csv_root(small):
    root = val_root(small)
    assert detect_layout(root) == "csv"
    vs = open_dataset(root)
    assert vs.layout == "csv"
    assert vs.class_ids == SMALL.wnids
    assert len(vs) == SMALL.count("val")
    assert [im.image_id for im in vs.images] == [f"SYNTH_val_{i:08d}" for i in range(1, len(vs) + 1)]
    for im in vs.images:
        assert 0 <= im.label < SMALL.classes
        assert im.label == (int(im.image_id[-8:]) - 1) % SMALL.classes
        with Image.open(im.path) as pil:
            assert pil.format == "JPEG" and pil.mode == "RGB"
            w, h = pil.size
        assert SMALL.min_side <= w <= SMALL.max_side and SMALL.min_side <= h <= SMALL.max_side
        b = im.boxes
        assert len(b) >= 1
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
        assert (b[:, 2] <= w - 1).all() and (b[:, 3] <= h - 1).all()
    names = read_synset_names(root / "LOC_synset_mapping.txt")
    assert names == dict(zip(SMALL.wnids, SMALL.class_names))


def test_load_val_voc_root_matches_csv(small):
    voc = val_root(small, "voc")
    assert detect_layout(voc) == "voc"
    vs_voc = open_dataset(voc, classes=voc / "LOC_synset_mapping.txt")
    vs_csv = open_dataset(val_root(small))
    assert vs_voc.layout == "voc"
    assert read_synset_mapping(voc / "LOC_synset_mapping.txt") == list(SMALL.wnids)
    assert vs_voc.fingerprint() == vs_csv.fingerprint()


def test_boxes_are_tight_bboxes_of_masks(small):
    vs = open_dataset(val_root(small))
    n_single = 0
    for im in vs.images:
        m = np.asarray(Image.open(mask_path(small, im.image_id)))
        assert m.dtype == np.uint8 and m.ndim == 2
        assert set(np.unique(m).tolist()) <= {0, 255}
        with Image.open(im.path) as pil:
            assert m.shape == (pil.height, pil.width)
        fg = m == 255
        b = im.boxes
        if len(b) == 1:
            n_single += 1
            assert _bbox(fg) == b[0].tolist()
        # every mask pixel is inside some box, every box edge touches mask pixels of its box
        inside = np.zeros_like(fg)
        for x0, y0, x1, y1 in b.tolist():
            inside[y0 : y1 + 1, x0 : x1 + 1] = True
            sub = fg[y0 : y1 + 1, x0 : x1 + 1]
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
        assert not (fg & ~inside).any()
        assert _bbox(fg) == [b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]
    assert n_single > 0


def test_render_matches_files(small):
    vs = open_dataset(val_root(small))
    for im in vs.images[:12]:
        s = render_sample(SMALL, "val", int(im.image_id[-8:]) - 1)
        assert s.image_id == im.image_id and s.label == im.label
        assert np.array_equal(s.boxes, im.boxes)
        decoded = np.asarray(Image.open(im.path).convert("RGB"), dtype=np.float64)
        assert decoded.shape == s.image.shape
        assert np.abs(decoded - s.image).mean() < 10.0  # JPEG q90 (4:2:0) smooths the grain
        assert np.corrcoef(decoded.ravel(), s.image.ravel())[0, 1] > 0.9
        # instances are disjoint and each box is the bbox of its own mask
        assert s.instance_masks.sum(axis=0).max() == 1
        for mk, box in zip(s.instance_masks, s.boxes):
            assert _bbox(mk) == box.tolist()
        assert np.array_equal(np.asarray(Image.open(mask_path(small, im.image_id))) == 255, s.mask)


def test_train_split(small):
    tr = train_root(small)
    assert sorted(p.name for p in tr.iterdir()) == list(SMALL.wnids)
    for wnid in SMALL.wnids:
        files = sorted((tr / wnid).iterdir())
        assert len(files) == SMALL.train_per_class
        assert all(f.suffix == ".JPEG" and f.name.startswith("SYNTH_train_") for f in files)
    with open(small / "train_boxes.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ids = {r["image_id"] for r in rows}
    assert len(ids) == SMALL.count("train")
    for r in rows:
        assert (tr / r["wnid"] / f"{r['image_id']}.JPEG").is_file()
        assert SMALL.wnids[int(r["label"])] == r["wnid"]
        x0, y0, x1, y1, w, h = (int(r[k]) for k in ("x0", "y0", "x1", "y1", "width", "height"))
        assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
        assert mask_path(small, r["image_id"]).is_file()


def test_class_balance(small):
    vs = open_dataset(val_root(small))
    counts = np.bincount([im.label for im in vs.images], minlength=SMALL.classes)
    assert counts.tolist() == [SMALL.val_per_class] * SMALL.classes


def test_dataset_json(small):
    meta = json.loads((small / "dataset.json").read_text(encoding="utf-8"))
    assert meta["version"] == DATASET_VERSION
    assert meta["seed"] == SMALL.seed
    assert meta["params"] == SMALL.params()
    assert meta["counts"]["val"]["images"] == SMALL.count("val")
    assert meta["counts"]["train"]["images"] == SMALL.count("train")
    assert [c["wnid"] for c in meta["classes"]] == list(SMALL.wnids)
    assert [c["name"] for c in meta["classes"]] == list(SMALL.class_names)
    assert (meta["sha256"], meta["files"]) == dataset_digest(small)


# --------------------------------------------------------------------------- content statistics


def test_multi_instance_rate():
    cfg = SynthConfig(seed=1)
    n = []
    for i in range(400):
        s = render_sample(cfg, "val", i)
        assert s.instance_masks.sum(axis=0).max() == 1  # instances never overlap
        assert [list(_bbox(m)) for m in s.instance_masks] == s.boxes.tolist()
        n.append(len(s.boxes))
    n = np.array(n)
    rate = (n > 1).mean()
    assert 0.14 <= rate <= 0.26, rate
    assert n.max() == 3 and n.min() == 1
    none = SynthConfig(seed=1, multi_instance_prob=0.0)
    assert all(len(render_sample(none, "val", i).boxes) == 1 for i in range(30))
    always = SynthConfig(seed=1, multi_instance_prob=1.0)
    assert np.mean([len(render_sample(always, "val", i).boxes) > 1 for i in range(30)]) >= 0.85


def test_object_sizes_and_image_sizes_vary():
    cfg = SynthConfig(seed=2)
    fracs, sizes = [], set()
    for i in range(200):
        s = render_sample(cfg, "train", i)
        h, w = s.image.shape[:2]
        sizes.add((w, h))
        b = s.boxes
        fracs += list(np.maximum(b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1) / min(w, h))
    fracs = np.array(fracs)
    assert fracs.min() >= 0.10 and fracs.max() <= 0.80
    assert np.percentile(fracs, 10) < 0.3 and np.percentile(fracs, 90) > 0.55
    assert len(sizes) > 150


def test_distractors_clutter_the_background():
    cfg = SynthConfig(seed=3)
    cluttered = 0
    n = 150
    for i in range(n):
        s = render_sample(cfg, "val", i, layers=True)
        assert not (s.distractor_mask & s.mask).any()
        # distractor parts come from other classes, one kind of part per other class
        parts = [d.split("/") for d in s.distractors if "/" in d]
        assert all(c != CLASS_NAMES[s.label] and c in CLASS_NAMES[: cfg.classes] for c, _ in parts)
        kinds: dict[str, set[str]] = {}
        for c, g in parts:
            kinds.setdefault(c, set()).add(g)
        assert all(len(g) == 1 for g in kinds.values())
        # pixels outside the object differ from the plain background where distractors are
        d = s.distractor_mask
        if d.mean() >= 0.005:
            diff = np.abs(s.image.astype(int) - s.background.astype(int)).sum(axis=2)
            if diff[d].mean() > 20:
                cluttered += 1
        # the object and distractor masks cover everything drawn: elsewhere the image is the
        # background layer, pixel for pixel
        outside = ~s.mask & ~d
        assert np.array_equal(s.image[outside], s.background[outside])
    assert cluttered / n >= 0.5, cluttered / n
    assert any(d.startswith("blob") for i in range(10) for d in render_sample(cfg, "val", i).distractors)


def test_render_speed():
    cfg = SynthConfig()
    t0 = time.perf_counter()
    for i in range(100):
        render_sample(cfg, "train", i)
    ms = 1000 * (time.perf_counter() - t0) / 100
    print(f"\nrender_sample: {ms:.1f} ms/image")
    assert ms < 60  # ~3-5 ms on one core; generous for loaded CI machines


# --------------------------------------------------------------------------- caching


def test_generate_cache_hit_and_refusals(small, tmp_path):
    meta = small / "dataset.json"
    before = meta.stat().st_mtime_ns
    t0 = time.perf_counter()
    assert generate(small, SMALL) == small.absolute()
    assert time.perf_counter() - t0 < 0.5
    assert meta.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="not empty"):
        generate(small, SynthConfig(seed=99, classes=6, train_per_class=4, val_per_class=8))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="no valid dataset.json"):
        generate(junk, SMALL)
    assert (junk / "notes.txt").read_text(encoding="utf-8") == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    tiny = SynthConfig(seed=1, classes=2, train_per_class=0, val_per_class=1)
    assert generate(empty, tiny) == empty.absolute() and verify_dataset(empty)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temp folders left


def test_verify_detects_tampering(tmp_path):
    out = generate(tmp_path / "t", SynthConfig(seed=4, classes=2, train_per_class=1, val_per_class=2))
    assert verify_dataset(out)
    victim = out / "val" / "SYNTH_val_00000001.JPEG"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    assert not verify_dataset(out)


def test_cache_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache" / f"synth-v{DATASET_VERSION}-seed0"
    assert default_cache_dir(SynthConfig(seed=5)) == tmp_path / "cache" / f"synth-v{DATASET_VERSION}-seed5"
    odd = default_cache_dir(SynthConfig(classes=3))
    assert odd.name.startswith(f"synth-v{DATASET_VERSION}-seed0-") and odd != default_cache_dir()
    monkeypatch.delenv("BENCH_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "wsol-bench" / f"synth-v{DATASET_VERSION}-seed0"

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    cfg = SynthConfig(seed=6, classes=2, train_per_class=1, val_per_class=1)
    first = ensure_dataset(cfg)
    assert first == default_cache_dir(cfg) and verify_dataset(first)
    stamp = (first / "dataset.json").stat().st_mtime_ns
    assert ensure_dataset(cfg) == first
    assert (first / "dataset.json").stat().st_mtime_ns == stamp
    explicit = ensure_dataset(cfg, tmp_path / "elsewhere")
    assert explicit == (tmp_path / "elsewhere").absolute()
    assert _tree_bytes(explicit) == _tree_bytes(first)
