"""Write small ILSVRC-style validation sets to disk in the three GT layouts.

Used by the tests and by the demo. Boxes are xyxy, 0-based, **inclusive** pixel indices and
are written exactly as given (no shift) in every layout.

On-disk result of :func:`write_ilsvrc_layout` for ``out``::

    out/val/<id><ext>                        images (or out/val/<wnid>/<id><ext>)
    out/voc/val -> ../val                    symlink (copy if symlinks are unavailable)
    out/voc/Annotations/CLS-LOC/val/<id>.xml
    out/csv/val -> ../val
    out/csv/LOC_val_solution.csv, out/csv/LOC_synset_mapping.txt
    out/wsol/val -> ../val
    out/wsol/metadata/{image_ids,class_labels,image_sizes,localization}.txt
"""

from __future__ import annotations

import colorsys
import io
import os
import shutil
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from bench.data.classes import load_class_names, load_wnids
from bench.data.dataset import IMAGE_EXTENSIONS

LAYOUTS: tuple[str, ...] = ("voc", "csv", "wsol")  # the ILSVRC layouts this module writes

__all__ = ["Sample", "write_ilsvrc_layout", "generated_samples", "class_colour"]

#: (image_id, image (H,W,3) uint8 RGB, wnid, boxes (n,4) int xyxy inclusive)
Sample = tuple[str, np.ndarray, str, np.ndarray]


def _check_samples(samples: Sequence[Sample], class_set: set[str], check_boxes: bool) -> None:
    problems: list[str] = []
    seen: set[str] = set()
    for k, (image_id, img, wnid, boxes) in enumerate(samples):
        tag = f"sample {k} ({image_id})"
        if not image_id or os.sep in image_id or image_id in seen:
            problems.append(f"{tag}: image id must be a unique non-empty file stem")
        seen.add(image_id)
        a = np.asarray(img)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            problems.append(f"{tag}: image must be (H,W,3) uint8, got {a.shape} {a.dtype}")
            continue
        if wnid not in class_set:
            problems.append(f"{tag}: WNID {wnid!r} not in the class list")
        b = np.asarray(boxes)
        if b.ndim != 2 or b.shape[1] != 4 or len(b) < 1 or not np.issubdtype(b.dtype, np.integer):
            problems.append(f"{tag}: boxes must be an (n>=1, 4) integer array, got {b.shape} {b.dtype}")
            continue
        if check_boxes:
            h, w = a.shape[:2]
            ok = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 0] <= b[:, 2]) & (b[:, 1] <= b[:, 3])
            ok &= (b[:, 2] <= w - 1) & (b[:, 3] <= h - 1)
            if not ok.all():
                problems.append(
                    f"{tag}: boxes {b[~ok].tolist()} outside 0<=x0<=x1<={w - 1}, 0<=y0<=y1<={h - 1}"
                )
    if problems:
        raise ValueError("invalid fixture samples:\n  " + "\n  ".join(problems))


def _save_image(img: np.ndarray, path: Path, jpeg_quality: int) -> None:
    pil = Image.fromarray(np.ascontiguousarray(img), mode="RGB")
    if path.suffix.lower() in (".jpeg", ".jpg"):
        pil.save(path, format="JPEG", quality=jpeg_quality)
    else:
        pil.save(path)  # format from the extension (.png, .bmp, .gif)


def _link_images(layout_root: Path) -> None:
    """Make ``layout_root/val`` point at ``../val`` (symlink, else a copy)."""
    link = layout_root / "val"
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    try:
        os.symlink(os.path.join("..", "val"), link, target_is_directory=True)
    except (OSError, NotImplementedError):
        shutil.copytree(layout_root.parent / "val", link)


def voc_annotation_xml(
    image_id: str,
    width: int,
    height: int,
    depth: int,
    wnid: str,
    boxes: Sequence[Sequence[int]],
    *,
    database: str = "ILSVRC_2012",
    segmented: int = 0,
    truncated: Sequence[int] | None = None,
) -> bytes:
    """One image's PASCAL VOC annotation in the official ILSVRC val shape (tab-indented, UTF-8).

    ``boxes`` are inclusive 0-based ``(xmin, ymin, xmax, ymax)``, written as is (never shifted);
    ``<filename>`` is the image id without extension, as in the official val XML files.
    ``truncated`` gives each object's flag (default 0).
    """
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "val"
    ET.SubElement(ann, "filename").text = image_id
    ET.SubElement(ET.SubElement(ann, "source"), "database").text = database
    size = ET.SubElement(ann, "size")
    for tag, v in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(v))
    ET.SubElement(ann, "segmented").text = str(segmented)
    for i, box in enumerate(boxes):
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = wnid
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(0 if truncated is None else int(truncated[i]))
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, tag).text = str(int(v))
    tree = ET.ElementTree(ann)
    ET.indent(tree, space="\t")
    buf = io.BytesIO()
    tree.write(buf, encoding="utf-8", xml_declaration=False)
    return buf.getvalue() + b"\n"


def write_ilsvrc_layout(
    out_dir: Path,
    samples: Sequence[Sample],
    layouts: Sequence[str] = ("voc", "csv", "wsol"),
    *,
    image_ext: str = ".JPEG",
    jpeg_quality: int = 95,
    class_subfolders: bool = False,
    wnids: Sequence[str] | None = None,
    check_boxes: bool = True,
) -> dict[str, Path]:
    """Write ``samples`` once as images and once per requested GT layout.

    Args:
        out_dir: output folder; ``out_dir/val`` must not exist or be empty.
        samples: ``(image_id, image (H,W,3) uint8 RGB, wnid, boxes (n,4) xyxy inclusive)``.
        layouts: any of 'voc', 'csv', 'wsol'; each gets its own root ``out_dir/<layout>/``.
        image_ext: file extension (JPEG via Pillow with ``jpeg_quality``; .png/.bmp/.gif
            by extension).
        class_subfolders: put images in ``val/<wnid>/`` instead of flat ``val/``.
        wnids: class list (default: the 1000 ImageNet WNIDs); class index = sorted position.
            Written to ``LOC_synset_mapping.txt`` and used for wsol labels.
        check_boxes: reject boxes outside ``0 <= x0 <= x1 <= W-1``, ``0 <= y0 <= y1 <= H-1``.

    Returns:
        ``{layout: root}`` — pass a root to :func:`bench.data.open.open_dataset`.
    """
    out = Path(out_dir)
    bad = [l for l in layouts if l not in LAYOUTS]
    if bad:
        raise ValueError(f"unknown layouts {bad}; use any of {LAYOUTS}")
    if image_ext.lower() not in IMAGE_EXTENSIONS or not image_ext.startswith("."):
        raise ValueError(f"image_ext {image_ext!r} must be one of {IMAGE_EXTENSIONS} (any case)")
    classes = sorted(wnids) if wnids is not None else load_wnids()
    _check_samples(samples, set(classes), check_boxes)
    index = {w: i for i, w in enumerate(classes)}

    val = out / "val"
    if val.exists() and any(val.iterdir()):
        raise FileExistsError(f"{val} exists and is not empty; write fixtures into a fresh folder")
    val.mkdir(parents=True, exist_ok=True)
    rel_paths: list[str] = []  # path of each image relative to a layout root
    for image_id, img, wnid, _ in samples:
        folder = val / wnid if class_subfolders else val
        folder.mkdir(exist_ok=True)
        _save_image(np.asarray(img), folder / f"{image_id}{image_ext}", jpeg_quality)
        rel_paths.append(
            "/".join(
                ["val", wnid, image_id + image_ext] if class_subfolders else ["val", image_id + image_ext]
            )
        )

    roots: dict[str, Path] = {}
    for layout in dict.fromkeys(layouts):
        root = out / layout
        root.mkdir(parents=True, exist_ok=True)
        _link_images(root)
        if layout == "voc":
            ann = root / "Annotations" / "CLS-LOC" / "val"
            ann.mkdir(parents=True, exist_ok=True)
            for image_id, img, wnid, boxes in samples:
                height, width, depth = np.asarray(img).shape
                (ann / f"{image_id}.xml").write_bytes(
                    voc_annotation_xml(image_id, width, height, depth, wnid, np.asarray(boxes).tolist())
                )
        elif layout == "csv":
            shipped = dict(zip(load_wnids(), load_class_names()))
            (root / "LOC_synset_mapping.txt").write_text(
                "".join(f"{w} {shipped.get(w, w)}\n" for w in classes), encoding="utf-8"
            )
            lines = ["ImageId,PredictionString"]
            for image_id, _, wnid, boxes in samples:
                # Kaggle's file ends every PredictionString with a space
                pred = "".join(
                    f"{wnid} {x0} {y0} {x1} {y1} " for x0, y0, x1, y1 in np.asarray(boxes).tolist()
                )
                lines.append(f"{image_id},{pred}")
            (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            meta = root / "metadata"
            meta.mkdir(exist_ok=True)
            ids, labels, sizes, locs = [], [], [], []
            for rel, (image_id, img, wnid, boxes) in zip(rel_paths, samples):
                h, w = np.asarray(img).shape[:2]
                ids.append(rel)
                labels.append(f"{rel},{index[wnid]}")
                sizes.append(f"{rel},{w},{h}")
                locs += [f"{rel},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in np.asarray(boxes).tolist()]
            for name, rows in (
                ("image_ids.txt", ids),
                ("class_labels.txt", labels),
                ("image_sizes.txt", sizes),
                ("localization.txt", locs),
            ):
                (meta / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        roots[layout] = root
    return roots


def class_colour(wnid: str) -> tuple[int, int, int]:
    """A saturated RGB colour fixed per WNID (hue from CRC-32 of the id)."""
    hue = (zlib.crc32(wnid.encode()) % 360) / 360.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.9, 0.95)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def generated_samples(n_images: int, seed: int, wnids: Sequence[str]) -> list[Sample]:
    """Deterministic synthetic validation samples.

    Image ``i`` (1-based) is ``ILSVRC2012_val_{i:08d}``, of random size between 64x48 and
    160x120, dim noise background with 1-3 rectangles/ellipses filled with the class colour
    (:func:`class_colour`). Each box is the tight inclusive xyxy extent of a drawn shape's
    pixels (later shapes may overlap earlier ones; boxes cover the full shapes).
    Same ``(n_images, seed, wnids)`` -> identical output.
    """
    if not wnids:
        raise ValueError("wnids must not be empty")
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    for i in range(1, n_images + 1):
        w = int(rng.integers(64, 161))
        h = int(rng.integers(48, 121))
        wnid = str(wnids[int(rng.integers(len(wnids)))])
        img = np.clip(rng.normal(100.0, 25.0, size=(h, w, 3)), 0, 255).astype(np.uint8)
        yy, xx = np.ogrid[0:h, 0:w]
        colour = np.array(class_colour(wnid), dtype=np.uint8)
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            bw = int(rng.integers(max(8, w // 6), w // 2 + 1))
            bh = int(rng.integers(max(8, h // 6), h // 2 + 1))
            x0 = int(rng.integers(0, w - bw + 1))
            y0 = int(rng.integers(0, h - bh + 1))
            x1, y1 = x0 + bw - 1, y0 + bh - 1
            if rng.random() < 0.5:
                mask = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
            else:
                cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
                rx, ry = bw / 2.0, bh / 2.0
                mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
            img[mask] = colour
            cols = np.flatnonzero(mask.any(axis=0))
            rows = np.flatnonzero(mask.any(axis=1))
            boxes.append([cols[0], rows[0], cols[-1], rows[-1]])
        out.append((f"ILSVRC2012_val_{i:08d}", img, wnid, np.asarray(boxes, dtype=np.int64)))
    return out
