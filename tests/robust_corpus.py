"""Generator of the bad-input corpus of tests/test_robustness.py (issue 6).

Two parts, each case carrying its exact expected outcome:

* :func:`write_image_corpus` writes ONE data set (VOC layout) whose images are bad or unusual in
  every way listed in :data:`IMAGE_KINDS`; a run over it must complete, each image either scored
  (``ok``, with the expected size / pixels / box) or a ``failed`` record whose ``error`` contains
  the expected reason.
* :func:`write_gt_cases` writes one small data root per ground-truth problem in
  :data:`GT_KINDS`; :func:`bench.data.open.open_dataset` must either fail with ONE
  :class:`~bench.data.dataset.DataError` listing exactly the expected problems, or load with the
  expected (clipped) boxes and counts.

Everything is generated from code (no binary files in the repository) and deterministic.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

TENCH, GOLDFISH, SHARK = "n01440764", "n01443537", "n01484850"
ID = "ILSVRC2012_val_{:08d}".format
ANN = Path("Annotations") / "CLS-LOC" / "val"


# --------------------------------------------------------------------------- file builders


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (filter 0 on every row): Pillow cannot write 16-bit colour PNGs."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + r for r in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_blank_png(path: Path, width: int, height: int) -> None:
    """A valid, all-black 8-bit grayscale PNG of any size, streamed (a 10,000 x 10,000 image is
    ~100 KB on disk and never exists in memory here)."""

    def chunk(fh, tag: bytes, data: bytes) -> None:
        fh.write(struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    comp = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte 0 + zeros
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        chunk(fh, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        chunk(fh, b"IDAT", b"".join(parts))
        chunk(fh, b"IEND", b"")


def _pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def voc_xml(image_id: str, wnid: str, boxes, size: tuple[int, int] | None) -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    objs = "".join(
        f"<object><name>{wnid}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    return f"<annotation><folder>val</folder><filename>{image_id}</filename>{size_xml}{objs}</annotation>\n"


# --------------------------------------------------------------------------- the image corpus


@dataclass(frozen=True)
class ImageCase:
    """One image of the corpus and its exact expected record."""

    kind: str
    image_id: str
    status: str  # "ok" | "failed"
    reason: str = ""  # substring of the record's `error` (failed)
    size: tuple[int, int] | None = None  # (width, height) of the ok record
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)  # exact decode (small)
    tolerance: int = 0  # max |decoded - pixels| (lossy JPEG cases)
    gt_boxes: tuple[tuple[int, int, int, int], ...] = ((0, 0, 0, 0),)  # as written in the XML
    loaded_boxes: tuple[tuple[int, int, int, int], ...] | None = None  # after load_val (clipping)
    note: str = ""

    @property
    def path(self) -> str:
        return f"val/{self.image_id}.JPEG"


#: Every kind of image written by write_image_corpus, in image-id order.
IMAGE_KINDS: tuple[str, ...] = (
    "control_rgb_jpeg",
    "truncated_jpeg",
    "truncated_png",
    "zero_byte",
    "not_an_image",
    "png_named_jpeg",
    "gif_named_jpeg",
    "cmyk_jpeg",
    "grayscale_jpeg",
    "png16_gray",
    "png16_rgb",
    "rgba_png",
    "la_png",
    "palette_transparency_png",
    "bilevel_png",
    "exif_rotated_jpeg",
    "progressive_jpeg",
    "trailing_garbage_jpeg",
    "one_pixel",
    "one_pixel_wide",
    "huge_10k",
    "bomb_beyond_pillow_limit",
    "unreadable_chmod_000",
    "directory_named_jpeg",
    "dangling_symlink",
    "fifo_named_jpeg",
    "char_device_symlink",
    "vanishes_before_decoding",
    "gt_box_past_the_edge",
)


def write_image_corpus(root: Path) -> dict[str, ImageCase]:
    """Write the corpus under ``root`` (``root/val/*.JPEG`` + ``root/Annotations/CLS-LOC/val``).

    Returns ``{kind: ImageCase}``. The caller deletes the ``vanishes_before_decoding`` image after
    :func:`load_val` and before the run decodes it. ``unreadable_chmod_000`` only fails where
    permissions bind (not as root): see :func:`permission_denial_effective`.
    """
    val = root / "val"
    ann = root / ANN
    val.mkdir(parents=True)
    ann.mkdir(parents=True)
    cases: dict[str, ImageCase] = {}

    def add(kind: str, status: str, *, data: bytes | None = None, xml_size=None, **kw) -> Path:
        image_id = ID(len(cases) + 1)
        case = ImageCase(kind, image_id, status, **kw)
        cases[kind] = case
        path = val / f"{image_id}.JPEG"
        if data is not None:
            path.write_bytes(data)
        (ann / f"{image_id}.xml").write_text(voc_xml(image_id, TENCH, case.gt_boxes, xml_size))
        return path

    noise = _noise(40, 48, seed=1)
    jpeg_noise = _pil_bytes(Image.fromarray(noise), "JPEG", quality=90)
    add("control_rgb_jpeg", "ok", data=jpeg_noise, size=(48, 40), note="a plain RGB JPEG")
    add(
        "truncated_jpeg",
        "failed",
        data=jpeg_noise[: len(jpeg_noise) // 2],
        reason="truncated image data",
        note="Pillow's LOAD_TRUNCATED_IMAGES stays off: half an image is not scored",
    )
    png_noise = _pil_bytes(Image.fromarray(noise), "PNG")
    add("truncated_png", "failed", data=png_noise[: len(png_noise) // 2], reason="truncated image data")
    add("zero_byte", "failed", data=b"", reason="empty file (0 bytes)")
    add("not_an_image", "failed", data=b"this is not an image\n" * 4, reason="not an image")

    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[1, 2, 3], [250, 251, 252], [9, 99, 199]]], np.uint8)
    add("png_named_jpeg", "ok", data=_pil_bytes(Image.fromarray(rgb), "PNG"), size=(3, 2), pixels=rgb,
        note="format from content, not the name")

    f1 = Image.new("P", (2, 2))
    f1.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    f1.putdata([0, 1, 2, 0])
    f2 = Image.new("P", (2, 2))
    f2.putpalette([9, 9, 9] * 256)
    gif = _pil_bytes(f1, "GIF", save_all=True, append_images=[f2])
    add("gif_named_jpeg", "ok", data=gif, size=(2, 2),
        pixels=np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 0, 0]]], np.uint8),
        note="animated GIF: first frame")

    cmyk = _pil_bytes(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    add("cmyk_jpeg", "ok", data=cmyk, size=(16, 16), pixels=np.full((16, 16, 3), (255, 0, 0), np.uint8),
        tolerance=2, note="CMYK red -> RGB red (Pillow's conversion)")
    gray = _pil_bytes(Image.new("L", (16, 16), 77), "JPEG", quality=95)
    add("grayscale_jpeg", "ok", data=gray, size=(16, 16), pixels=np.full((16, 16, 3), 77, np.uint8), tolerance=1)

    g16 = np.array([[0, 65535], [32896, 1000]], dtype=">u2")
    add("png16_gray", "ok", data=png_bytes(2, 2, 16, 0, [r.tobytes() for r in g16]), size=(2, 2),
        pixels=np.repeat(np.array([[0, 255], [128, 4]], np.uint8)[:, :, None], 3, axis=2),
        note="rint(v * 255 / 65535)")
    c16 = np.array([[[0, 1000, 65535], [32896, 300, 65280]], [[65535, 65535, 65535], [255, 256, 511]]], dtype=">u2")
    add("png16_rgb", "ok", data=png_bytes(2, 2, 16, 2, [r.tobytes() for r in c16]), size=(2, 2),
        pixels=(c16.astype(np.int64) >> 8).astype(np.uint8), note="Pillow keeps the high byte (v >> 8)")

    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]], [[70, 80, 90, 255], [255, 255, 255, 0]]], np.uint8)
    add("rgba_png", "ok", data=_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), size=(2, 2), pixels=rgba[:, :, :3],
        note="alpha dropped: stored colours kept, nothing composited")
    la = Image.new("LA", (2, 1))
    la.putdata([(7, 0), (200, 255)])
    add("la_png", "ok", data=_pil_bytes(la, "PNG"), size=(2, 1),
        pixels=np.array([[[7, 7, 7], [200, 200, 200]]], np.uint8))
    pal = Image.new("P", (2, 1))
    pal.putpalette([12, 34, 56, 78, 90, 12] + [0] * 762)
    pal.putdata([0, 1])
    pal.info["transparency"] = 0
    add("palette_transparency_png", "ok", data=_pil_bytes(pal, "PNG", transparency=0), size=(2, 1),
        pixels=np.array([[[12, 34, 56], [78, 90, 12]]], np.uint8))
    bilevel = Image.new("1", (2, 2))
    bilevel.putdata([0, 255, 255, 0])
    add("bilevel_png", "ok", data=_pil_bytes(bilevel, "PNG"), size=(2, 2),
        pixels=np.array([[[0] * 3, [255] * 3], [[255] * 3, [0] * 3]], np.uint8))

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    add("exif_rotated_jpeg", "ok", data=_pil_bytes(Image.fromarray(_noise(16, 32, 2)), "JPEG", exif=exif.tobytes()),
        size=(32, 16), note="EXIF orientation not applied: boxes refer to stored pixels")
    add("progressive_jpeg", "ok", data=_pil_bytes(Image.fromarray(noise), "JPEG", progressive=True), size=(48, 40))
    add("trailing_garbage_jpeg", "ok", data=jpeg_noise + b"\x00garbage after the end-of-image marker" * 10,
        size=(48, 40))
    add("one_pixel", "ok", data=_pil_bytes(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), size=(1, 1),
        pixels=np.array([[[200, 30, 30]]], np.uint8), note="CAM upsampled to 1x1: every box (0,0,0,0)")
    add("one_pixel_wide", "ok", data=_pil_bytes(Image.fromarray(_noise(64, 1, 3)), "PNG"), size=(1, 64),
        gt_boxes=((0, 5, 0, 40),))

    huge = add("huge_10k", "failed", reason="too large: 10000x10000 = 100,000,000 pixels", xml_size=(10000, 10000),
               note="refused from the header: 6 CAMs at 10k x 10k would be 2.4 GB")
    write_blank_png(huge, 10000, 10000)
    bomb = add("bomb_beyond_pillow_limit", "failed", reason="too large: Image size (179024400 pixels) exceeds limit",
               note="> 2 x Pillow's limit: Pillow's DecompressionBombError, mapped")
    write_blank_png(bomb, 13380, 13380)

    unreadable = add("unreadable_chmod_000", "failed", data=jpeg_noise, reason="permission denied")
    os.chmod(unreadable, 0)
    add("directory_named_jpeg", "failed", reason="not a regular file: a directory").mkdir()
    os.symlink(Path("..") / "nowhere" / "gone.JPEG",
               add("dangling_symlink", "failed", reason="broken symlink: its target ../nowhere/gone.JPEG does not exist"))
    os.mkfifo(add("fifo_named_jpeg", "failed", reason="not a regular file: a FIFO (named pipe)"))
    os.symlink(os.devnull, add("char_device_symlink", "failed", reason="not a regular file: a character device"))
    add("vanishes_before_decoding", "failed", data=jpeg_noise, reason="file not found")

    add("gt_box_past_the_edge", "ok", data=_pil_bytes(Image.fromarray(_noise(30, 40, 4)), "PNG"), size=(40, 30),
        xml_size=(40, 30), gt_boxes=((5, 6, 40, 30), (1, 1, 10, 10)), loaded_boxes=((5, 6, 39, 29), (1, 1, 10, 10)),
        note="xmax = W, ymax = H (one past the last pixel, as in 12 official boxes): clipped, counted")
    assert tuple(cases) == IMAGE_KINDS, "IMAGE_KINDS must list the kinds in writing order"
    return cases


def permission_denial_effective(path: Path) -> bool:
    """True if opening ``path`` (chmod 000) really fails for this user (it does not for root)."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


# --------------------------------------------------------------------------- ground-truth cases


@dataclass(frozen=True)
class GTCase:
    """A data root with one ground-truth problem (or a policy case that loads)."""

    kind: str
    root: Path
    #: expected problems, exactly: (problem kind, substring of that problem's text), any order
    problems: tuple[tuple[str, str], ...] = ()
    #: for cases that load: image_id -> boxes after load_val
    boxes: dict[str, list[list[int]]] = field(default_factory=dict)
    clipped_boxes: int = 0
    wnids: tuple[str, ...] | None = None
    labels: dict[str, int] = field(default_factory=dict)
    blacklist: Path | None = None
    blacklisted: frozenset[str] = frozenset()
    note: str = ""


#: Every kind of ground-truth case written by write_gt_cases.
GT_KINDS: tuple[str, ...] = (
    "malformed_xml",
    "unknown_wnid_voc",
    "unknown_wnid_csv",
    "box_xmax_equals_width_voc",
    "box_overhang_csv_header_size",
    "box_overhang_wsol_sizes",
    "box_overhang_voc_without_size",
    "box_entirely_outside",
    "box_xmin_greater_than_xmax",
    "box_negative",
    "bad_size_in_xml",
    "image_without_annotation",
    "annotation_without_image",
    "duplicate_csv_rows",
    "duplicate_image_files",
    "duplicate_voc_files",
    "csv_rows_with_extra_fields",
    "many_problems_one_message",
    "blacklist_symlink_outside_root",
    "blacklist_symlink_inside_root",
    "voc_root_synset_mapping",
)


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _voc(root: Path, items: dict[str, tuple[str, list[tuple[int, int, int, int]]]], size=(40, 30), images=None) -> Path:
    for image_id, (wnid, boxes) in items.items():
        _text(root / ANN / f"{image_id}.xml", voc_xml(image_id, wnid, boxes, size))
    for image_id in items if images is None else images:
        _image(root / "val" / f"{image_id}.JPEG")
    return root


def _csv(root: Path, rows: list[str], images) -> Path:
    _text(root / "LOC_val_solution.csv", "ImageId,PredictionString\n" + "".join(r + "\n" for r in rows))
    for image_id in images:
        _image(root / "val" / f"{image_id}.JPEG")
    return root


def write_gt_cases(base: Path) -> dict[str, GTCase]:
    """One root per case under ``base``; returns ``{kind: GTCase}``."""
    out: dict[str, GTCase] = {}

    def case(kind: str, root: Path, **kw) -> None:
        out[kind] = GTCase(kind, root, **kw)

    r = _voc(base / "malformed_xml", {ID(1): (TENCH, [(1, 1, 5, 5)])}, images=[ID(1), ID(2)])
    _text(r / ANN / f"{ID(2)}.xml", f"<annotation>\n<filename>{ID(2)}</filename>\n<size><width>5</height>\n</annotation>\n")
    case("malformed_xml", r, problems=(("malformed-xml", f"{ID(2)}.xml:3: malformed XML (mismatched tag: line 3"),),
         note="names the file and the line")

    r = _voc(base / "unknown_wnid_voc", {ID(1): ("n99999999", [(1, 1, 5, 5)])})
    case("unknown_wnid_voc", r, problems=(("unknown-wnid", f"{ID(1)}.xml: unknown class id 'n99999999'"),))

    r = _csv(base / "unknown_wnid_csv", [f"{ID(1)},{TENCH} 1 1 5 5", f"{ID(2)},n99999999 1 1 5 5"], [ID(1), ID(2)])
    case("unknown_wnid_csv", r, problems=(("unknown-wnid", f"LOC_val_solution.csv:3 ({ID(2)}): unknown class id"),))

    r = _voc(base / "box_xmax_equals_width_voc", {ID(1): (TENCH, [(3, 4, 40, 29), (0, 0, 39, 30)])})
    case("box_xmax_equals_width_voc", r, boxes={ID(1): [[3, 4, 39, 29], [0, 0, 39, 29]]}, clipped_boxes=2,
         note="xmax = W / ymax = H (the official off-by-one): clipped to W-1 / H-1 from <size>, counted")

    r = _csv(base / "box_overhang_csv_header_size", [f"{ID(1)},{TENCH} 3 4 60 45 {TENCH} 1 1 5 5"], [ID(1)])
    case("box_overhang_csv_header_size", r, boxes={ID(1): [[3, 4, 39, 29], [1, 1, 5, 5]]}, clipped_boxes=1,
         note="CSV states no sizes: the image header's 40x30 is used")

    r = base / "box_overhang_wsol_sizes"
    _text(r / "metadata" / "image_ids.txt", f"val/{ID(1)}.JPEG\n")
    _text(r / "metadata" / "class_labels.txt", f"val/{ID(1)}.JPEG,0\n")
    _text(r / "metadata" / "image_sizes.txt", f"val/{ID(1)}.JPEG,20,10\n")
    _text(r / "metadata" / "localization.txt", f"val/{ID(1)}.JPEG,2,3,20,10\n")
    _image(r / "val" / f"{ID(1)}.JPEG")  # 40x30 on disk: the annotation's stated size wins
    case("box_overhang_wsol_sizes", r, boxes={ID(1): [[2, 3, 19, 9]]}, clipped_boxes=1,
         note="image_sizes.txt states 20x10: it is used (not the header)")

    r = _voc(base / "box_overhang_voc_without_size", {ID(1): (TENCH, [(2, 2, 45, 10)])}, size=None)
    case("box_overhang_voc_without_size", r, boxes={ID(1): [[2, 2, 39, 10]]}, clipped_boxes=1)

    r = _voc(base / "box_entirely_outside", {ID(1): (TENCH, [(45, 2, 50, 5), (1, 1, 2, 2)]), ID(2): (TENCH, [(1, 30, 3, 33)])})
    case("box_entirely_outside", r, problems=(
        ("box-outside", f"({ID(1)}): box [45, 2, 50, 5] lies outside the 40x30 image"),
        ("box-outside", f"({ID(2)}): box [1, 30, 3, 33] lies outside the 40x30 image"),
    ))

    r = _voc(base / "box_xmin_greater_than_xmax", {ID(1): (TENCH, [(9, 1, 3, 5)])})
    case("box_xmin_greater_than_xmax", r, problems=(("bad-box", "box [9, 1, 3, 5] is invalid (xmin > xmax)"),))

    r = _voc(base / "box_negative", {ID(1): (TENCH, [(-1, 0, 3, 5)])})
    case("box_negative", r, problems=(("bad-box", "(negative coordinate)"),))

    r = _voc(base / "bad_size_in_xml", {ID(1): (TENCH, [(1, 1, 3, 3)])}, size=("-4", "abc"))
    case("bad_size_in_xml", r, problems=(("bad-size", "'-4'/'abc' are not non-negative integers"),))

    r = _csv(base / "image_without_annotation", [f"{ID(1)},{TENCH} 1 1 5 5"], [ID(1), ID(2)])
    case("image_without_annotation", r, problems=(("unannotated-image", f"{ID(2)}.JPEG: image file has no annotation"),))

    r = _csv(base / "annotation_without_image", [f"{ID(1)},{TENCH} 1 1 5 5", f"{ID(2)},{TENCH} 1 1 5 5"], [ID(1)])
    case("annotation_without_image", r, problems=(("missing-image", f"image {ID(2)} is annotated"),))

    r = _csv(base / "duplicate_csv_rows", [f"{ID(1)},{TENCH} 1 1 5 5", f"{ID(1)},{TENCH} 2 2 6 6"], [ID(1)])
    case("duplicate_csv_rows", r, problems=(("duplicate-id", f"LOC_val_solution.csv:2,3: image id {ID(1)} appears on 2 rows"),))

    r = _csv(base / "duplicate_image_files", [f"{ID(1)},{TENCH} 1 1 5 5"], [ID(1)])
    _image(r / "val" / f"{ID(1)}.png")
    case("duplicate_image_files", r, problems=(("duplicate-image", f"image id {ID(1)} has several files"),))

    r = _voc(base / "duplicate_voc_files", {ID(1): (TENCH, [(1, 1, 5, 5)])})
    _text(r / ANN / "extra" / f"{ID(1)}.xml", voc_xml(ID(1), TENCH, [(1, 1, 5, 5)], (40, 30)))
    case("duplicate_voc_files", r, problems=(("duplicate-id", f"image id {ID(1)} is also annotated by"),))

    r = _csv(
        base / "csv_rows_with_extra_fields",
        [
            f"{ID(1)},{TENCH} 1 1 5 5",
            f"{ID(2)},{TENCH} 1 1 5 5,oops",
            f"{ID(3)},{TENCH} 1 1 5 5",
            f"{ID(4)},{TENCH},1,1,5,5",
            f"{ID(5)},{TENCH} 1 1 5",
        ],
        [ID(i) for i in range(1, 6)],
    )
    case("csv_rows_with_extra_fields", r, problems=(
        ("bad-row", "LOC_val_solution.csv:3: row has 3 comma-separated fields, expected 2"),
        ("bad-row", "LOC_val_solution.csv:5: row has 6 comma-separated fields, expected 2"),
        ("bad-row", f"LOC_val_solution.csv:6 ({ID(5)}): PredictionString has 4 fields"),
    ), note="every bad row listed (pandas alone stops at the first)")

    r = _csv(
        base / "many_problems_one_message",
        [
            f"{ID(1)},{TENCH} 1 1 5 5",
            f"{ID(2)},n99999999 1 1 5 5",
            f"{ID(3)},{TENCH} 9 1 3 5",
            f"{ID(4)},{TENCH} 50 1 55 5",
            f"{ID(5)},{TENCH} 1 1 5 5,x",
            f"{ID(6)},{TENCH} 1 1 5 5",
        ],
        [ID(i) for i in (1, 2, 3, 4, 5, 7)],
    )
    case("many_problems_one_message", r, problems=(
        ("unknown-wnid", "n99999999"),
        ("bad-box", "xmin > xmax"),
        ("box-outside", "box [50, 1, 55, 5] lies outside"),
        ("bad-row", "LOC_val_solution.csv:6: row has 3 comma-separated fields"),
        ("missing-image", f"image {ID(6)} is annotated"),
        ("unannotated-image", f"{ID(7)}.JPEG"),
    ))

    secret = _text(base / "outside_secret.txt", "not yours\n")
    r = _csv(base / "blacklist_symlink_outside_root", [f"{ID(1)},{TENCH} 1 1 5 5"], [ID(1)])
    os.symlink(secret, r / "blacklist.txt")
    case("blacklist_symlink_outside_root", r, blacklist=r / "blacklist.txt",
         problems=(("unsafe-path", f"resolves to {secret.resolve()}, outside it"),))

    r = _csv(base / "blacklist_symlink_inside_root", [f"{ID(1)},{TENCH} 1 1 5 5", f"{ID(2)},{TENCH} 1 1 5 5"], [ID(1), ID(2)])
    _text(r / "lists" / "real.txt", f"{ID(2)}\n")
    os.symlink(Path("lists") / "real.txt", r / "blacklist.txt")
    case("blacklist_symlink_inside_root", r, blacklist=r / "blacklist.txt", blacklisted=frozenset({ID(2)}),
         boxes={ID(1): [[1, 1, 5, 5]], ID(2): [[1, 1, 5, 5]]})

    r = _voc(base / "voc_root_synset_mapping", {ID(1): ("n90000002", [(1, 1, 5, 5)]), ID(2): ("n90000001", [(2, 2, 6, 6)])})
    _text(r / "LOC_synset_mapping.txt", "n90000002 cart\nn90000001 flower\n")
    case("voc_root_synset_mapping", r, wnids=("n90000001", "n90000002"), labels={ID(1): 1, ID(2): 0},
         boxes={ID(1): [[1, 1, 5, 5]], ID(2): [[2, 2, 6, 6]]},
         note="a VOC root's LOC_synset_mapping.txt is its class list (the generated demo data)")

    assert tuple(out) == GT_KINDS, "GT_KINDS must list the kinds in writing order"
    return out
