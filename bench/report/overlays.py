"""Look at a run: CAM overlays with GT and guessed boxes, drawn with Pillow (`bench show`).

Replaying a run
---------------
Records keep boxes, not maps. :class:`RunReplay` re-creates what a finished run looked at, from its
``manifest.json`` only: the resolved protocol (its hash must match), the model (registry name; the
weights file's SHA-256 is verified before the weights are used, and the weights loaded are checked
again), and the data (root, GT layout and ``--images`` from the recorded command line; the loaded
GT's fingerprint must equal the recorded one, which also catches data edited since the run). The
maps are recomputed exactly as the engine computes them (same input transform and DataLoader
dataset, one batched forward with the run's recorded ``amp`` / ``channels_last`` settings,
``class_activation_maps`` in float32 (or read from the run's float32 map cache),
``upsample_cam`` with the protocol's upsample mode), for the selected images only.

What an overlay shows (one PNG per image)
-----------------------------------------
Two panels side by side, each the photo at its ORIGINAL size (no padding inside a panel, so a box
pixel ``(x, y)`` of the records is at ``(panel.x + x, panel.y + y)`` of the PNG). Only photos whose
short side is under :data:`MIN_PANEL_SIDE` px (e.g. the generated demo data) are enlarged, by the
integer factor ``panel.scale`` with nearest neighbour: pixel ``(x, y)`` is then the uniform block at
``panel.pixel(x, y)``. The panels show:

* left, the CAM of the top-1 class, with the top-1 class's scored guess box(es) (``tight_loose``
  suites: the loose and the tight box of c1);
* right, the CAM of the GT class, with the GT-known box.

Both panels also show the GT boxes. A title strip above the panels names the map; a caption
strip below gives the image id, the GT class, the top-5 with scores and the IoUs. The CAM is
shown as ``M / max(M)`` clipped to ``[0, 1]`` (the scale the box rule thresholds; negative values
show as 0), coloured with a 256-entry turbo LUT and alpha-blended over the photo with
:data:`CAM_ALPHA`: ``out = round((1 - a) * photo + a * turbo(M / max M))``.

Boxes are drawn inward from their inclusive edges (the box's own edge pixels carry the colour) with
a 1-pixel black halo just outside: GT :data:`GT_COLOR` (green), a guess that localizes the image
:data:`HIT_COLOR` (yellow), one that does not :data:`MISS_COLOR` (red). Each box has a label (class
name, and IoU for guesses; extra GT boxes of a multi-instance image just "GT") on a patch of its
colour at its top-left corner, above the box when there is room, else just inside it (or at the
bottom edge when those spots are taken by another label). GT outlines are drawn over guess
outlines, guess labels over GT labels. Boxes come from the run's records (what was scored); a box
recomputed from the replayed map at the protocol threshold that differs from the record is
reported as a warning in the caption.

Picking images (:func:`select_images`)
-------------------------------------
``worst`` / ``best``: the localized images (status ok, with a GT-known box) ordered by GT-known IoU
(``gtk_iou``), ascending for worst and descending for best; ties go to top-1 localization (a top-1
miss is "worse" than a hit), then to the image id. ``random``: a seeded draw without replacement.
``images``: explicit ids, in the order given. With two runs the selection is made on the first.

Why Pillow and not matplotlib: the overlay must put every box on its exact pixel (the tests read
the PNG at the records' coordinates); Pillow draws straight into an image at original size, while
matplotlib renders through a figure (dpi, margins, antialiasing) whose pixel mapping would have to
be undone. The colormap is a 256-entry table (Google's turbo, polynomial fit) and ``ImageDraw``
does the rest, so the package needs no plotting library.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from bench.core.boxes import boxes_for_maps
from bench.core.records import parse_boxes, parse_floats, parse_ints
from bench.data.transforms import decode_rgb
from bench.run.replay import ImageMaps, ReplayError, RunReplay

__all__ = [
    "CAM_ALPHA",
    "GT_COLOR",
    "HIT_COLOR",
    "MISS_COLOR",
    "HALO_COLOR",
    "TURBO_LUT",
    "BoxMark",
    "Panel",
    "Overlay",
    "turbo_lut",
    "normalize_cam",
    "apply_colormap",
    "blend_cam",
    "line_width_for",
    "panel_scale",
    "MIN_PANEL_SIDE",
    "get_font",
    "render_panel",
    "render_image",
    "render_run_images",
    "compose_side_by_side",
    "select_images",
    "show",
    "recorded_command",
]

#: Opacity of the colour-mapped CAM over the photo.
CAM_ALPHA: float = 0.5
#: Outline colours (RGB).
GT_COLOR: tuple[int, int, int] = (0, 255, 0)
HIT_COLOR: tuple[int, int, int] = (255, 221, 0)
MISS_COLOR: tuple[int, int, int] = (255, 0, 0)
HALO_COLOR: tuple[int, int, int] = (0, 0, 0)
#: Background of title and caption strips, and the gap between panels.
STRIP_COLOR: tuple[int, int, int] = (255, 255, 255)
TEXT_COLOR: tuple[int, int, int] = (0, 0, 0)
#: Pixels between two panels (and between two runs' overlays).
PANEL_GAP: int = 8
RUN_GAP: int = 24


# ---- colormap ------------------------------------------------------------------------------------
def turbo_lut(n: int = 256) -> np.ndarray:
    """Google's turbo colormap as an ``(n, 3)`` uint8 table (near black, blue, cyan, green, yellow, red, dark red).

    Uses the published degree-5 polynomial fit of turbo (A. Mikhailov, Google, 2019), evaluated at
    ``x = i / (n - 1)`` and clipped to [0, 1].
    """
    x = np.linspace(0.0, 1.0, n)
    powers = np.stack([np.ones_like(x), x, x**2, x**3, x**4, x**5], axis=1)  # (n, 6)
    coeffs = np.array(
        [
            [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
            [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
            [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
        ]
    )
    rgb = np.clip(powers @ coeffs.T, 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


#: The 256-entry turbo table used for every overlay.
TURBO_LUT: np.ndarray = turbo_lut()
TURBO_LUT.setflags(write=False)


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """``M / max(M)`` clipped to [0, 1] as float32; all zeros when ``max(M) <= 0`` (nothing to show)."""
    cam = np.asarray(cam, dtype=np.float64)
    top = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(top) or top <= 0.0:
        return np.zeros(cam.shape, dtype=np.float32)
    return np.clip(cam / top, 0.0, 1.0).astype(np.float32)


def apply_colormap(values: np.ndarray, lut: np.ndarray = TURBO_LUT) -> np.ndarray:
    """Values in [0, 1] ``(H, W)`` -> ``(H, W, 3)`` uint8 through ``lut`` (index ``round(v * (n-1))``)."""
    index = np.rint(np.clip(values, 0.0, 1.0) * (len(lut) - 1)).astype(np.intp)
    return lut[index]


def blend_cam(rgb: np.ndarray, cam: np.ndarray, alpha: float = CAM_ALPHA, lut: np.ndarray = TURBO_LUT) -> np.ndarray:
    """Alpha-blend the colour-mapped, max-normalised ``cam`` over ``rgb`` (both ``H x W``)."""
    if rgb.shape[:2] != cam.shape:
        raise ValueError(f"image {rgb.shape[:2]} and CAM {cam.shape} differ in size; upsample the CAM first")
    colours = apply_colormap(normalize_cam(cam), lut).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---- drawing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxMark:
    """A box to draw: inclusive ``(x1, y1, x2, y2)`` in the panel's pixels, its colour and label."""

    box: tuple[int, int, int, int]
    color: tuple[int, int, int]
    label: str


@dataclass(frozen=True)
class Panel:
    """Where one photo panel sits in an overlay PNG and what it shows.

    Original pixel ``(x, y)`` of the photo is the ``scale x scale`` block whose top-left corner is
    ``(self.x + x * scale, self.y + y * scale)`` (``scale`` is 1 unless the photo is small).
    """

    x: int
    y: int
    width: int
    height: int
    title: str
    scale: int = 1

    def pixel(self, x: int, y: int) -> tuple[int, int]:
        """PNG coordinates of the top-left of original pixel ``(x, y)``."""
        return self.x + x * self.scale, self.y + y * self.scale


@dataclass
class Overlay:
    """A rendered overlay: the image, its panels (for pixel lookups) and any replay warnings."""

    image: Image.Image
    panels: list[Panel]
    image_id: str = ""
    warnings: list[str] = field(default_factory=list)

    def save(self, path: Path) -> Path:
        """Write the overlay as PNG (lossless, so the drawn colours are exact)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path, format="PNG")
        return path


#: Photos whose short side is below this are enlarged by an integer factor (nearest neighbour).
MIN_PANEL_SIDE: int = 256
MAX_PANEL_SCALE: int = 8


def panel_scale(height: int, width: int) -> int:
    """Integer enlargement of a small photo: the least k with ``k * min(H, W) >= MIN_PANEL_SIDE`` (1..8)."""
    return int(min(MAX_PANEL_SCALE, max(1, math.ceil(MIN_PANEL_SIDE / max(1, min(height, width))))))


def line_width_for(height: int, width: int) -> int:
    """Box outline width: 2 px up to 449 px short side, then one more pixel per 150 px."""
    return max(2, min(height, width) // 150)


def get_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (needs FreeType, Pillow >= 10.1); else the bitmap default."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _font_size(height: int, width: int) -> int:
    return max(12, min(height, width) // 28)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(math.ceil(right)), int(math.ceil(bottom))


def _draw_boxes(img: Image.Image, marks: Sequence[BoxMark], line_width: int, font: Any) -> None:
    """Halos first (so no halo covers a coloured line), outlines in ``marks`` order (later on top),
    then labels in REVERSE order (earlier on top): pass guesses before GT boxes and the GT outlines
    stay exact while the guesses' labels (with their IoU) stay readable."""
    draw = ImageDraw.Draw(img)
    for m in marks:
        x1, y1, x2, y2 = m.box
        draw.rectangle([x1 - 1, y1 - 1, x2 + 1, y2 + 1], outline=HALO_COLOR, width=1)
    for m in marks:
        x1, y1, x2, y2 = m.box
        draw.rectangle([x1, y1, x2, y2], outline=m.color, width=min(line_width, x2 - x1 + 1, y2 - y1 + 1))
    pad = 2
    placed: list[tuple[BoxMark, tuple[int, int, int, int]]] = []
    for m in marks:  # placement in mark order: earlier marks get the best spots
        if m.label:
            tw, th = _text_size(draw, m.label, font)
            rect = _label_rect(m.box, tw + 2 * pad, th + 2 * pad, line_width, img.size, [r for _, r in placed])
            placed.append((m, rect))
    for m, (left, top, right, bottom) in reversed(placed):  # drawing in reverse: earlier marks on top
        draw.rectangle([left, top, right, bottom], fill=m.color)
        draw.text((left + pad, top + pad), m.label, fill=TEXT_COLOR, font=font)


def _label_rect(
    box: tuple[int, int, int, int], w: int, h: int, line_width: int, size: tuple[int, int], taken: Sequence[tuple[int, int, int, int]]
) -> tuple[int, int, int, int]:
    """Inclusive rectangle of a ``w x h`` label for ``box``: the first of [above the top-left corner,
    inside below the top edge, below the bottom edge, inside above the bottom edge] that fits in the
    image and overlaps no label already placed; the first that fits when all overlap."""
    x1, y1, x2, y2 = box
    width, height = size
    left = max(0, min(x1, width - w))
    tops = [y1 - 2 - h, y1 + line_width, y2 + 2, y2 - line_width - h + 1]
    rects = [(left, t, left + w - 1, t + h - 1) for t in tops if 0 <= t and t + h <= height]
    if not rects:
        return (left, 0, left + w - 1, h - 1)

    def free(r: tuple[int, int, int, int]) -> bool:
        return all(r[2] < o[0] or o[2] < r[0] or r[3] < o[1] or o[3] < r[1] for o in taken)

    return next((r for r in rects if free(r)), rects[0])


def render_panel(
    rgb: np.ndarray, cam: np.ndarray | None, marks: Sequence[BoxMark], *, alpha: float = CAM_ALPHA, scale: int = 1
) -> Image.Image:
    """One panel: CAM blended over ``rgb`` at the photo's original size, enlarged ``scale`` times
    (nearest neighbour, so each original pixel becomes a uniform block), then ``marks``.

    Boxes are in original pixels; with ``scale > 1`` a box covers whole blocks, so its outline
    starts at the outer edge of its edge pixels' blocks. The photo is shown as is when ``cam`` is
    None or degenerate (``max <= 0``, nothing to segment).
    """
    height, width = rgb.shape[:2]
    show_cam = cam is not None and cam.size > 0 and float(np.max(cam)) > 0.0  # max <= 0: nothing to show
    pixels = blend_cam(rgb, cam, alpha) if show_cam else np.ascontiguousarray(rgb, dtype=np.uint8)
    img = Image.fromarray(pixels, mode="RGB")
    s = int(scale)
    if s > 1:
        img = img.resize((width * s, height * s), Image.Resampling.NEAREST)
        marks = [BoxMark((m.box[0] * s, m.box[1] * s, m.box[2] * s + s - 1, m.box[3] * s + s - 1), m.color, m.label) for m in marks]
    _draw_boxes(img, marks, line_width_for(height * s, width * s), get_font(_font_size(height * s, width * s)))
    return img


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap of one paragraph to ``width`` pixels."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if current and _text_size(draw, trial, font)[0] > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _strip(width: int, paragraphs: Sequence[str], font: Any, margin: int = 6) -> Image.Image:
    """A white strip of ``width`` px holding wrapped text paragraphs."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [line for p in paragraphs for line in _wrap(probe, p, font, width - 2 * margin)]
    line_h = _text_size(probe, "Hg", font)[1] + 3
    img = Image.new("RGB", (width, max(1, len(lines)) * line_h + 2 * margin), STRIP_COLOR)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * line_h), line, fill=TEXT_COLOR, font=font)
    return img


def _assemble(panels: Sequence[tuple[Image.Image, str]], caption: Sequence[str], font: Any, gap: int = PANEL_GAP, scale: int = 1) -> Overlay:
    """Panels left to right under a title strip each, a caption strip below all."""
    widths = [p.width for p, _ in panels]
    total_w = sum(widths) + gap * (len(panels) - 1)
    titles = [_strip(p.width, [t], font) for p, t in panels]
    title_h = max(t.height for t in titles)
    panel_h = max(p.height for p, _ in panels)
    cap = _strip(total_w, caption, font) if caption else None
    total_h = title_h + panel_h + (cap.height if cap else 0)
    canvas = Image.new("RGB", (total_w, total_h), STRIP_COLOR)
    placed = []
    x = 0
    for (img, title), strip in zip(panels, titles):
        canvas.paste(strip, (x, 0))
        canvas.paste(img, (x, title_h))
        placed.append(Panel(x, title_h, img.width, img.height, title, scale))
        x += img.width + gap
    if cap:
        canvas.paste(cap, (0, title_h + panel_h))
    return Overlay(canvas, placed)


def compose_side_by_side(overlays: Sequence[Overlay], headers: Sequence[str], gap: int = RUN_GAP) -> Overlay:
    """Several overlays of the same image (e.g. a GAP and a GMP run) left to right, each under a header."""
    if len(overlays) != len(headers):
        raise ValueError("one header per overlay")
    font = get_font(max(14, min(o.image.height for o in overlays) // 30))
    strips = [_strip(o.image.width, [h], font) for o, h in zip(overlays, headers)]
    head_h = max(s.height for s in strips)
    total_w = sum(o.image.width for o in overlays) + gap * (len(overlays) - 1)
    total_h = head_h + max(o.image.height for o in overlays)
    canvas = Image.new("RGB", (total_w, total_h), STRIP_COLOR)
    panels: list[Panel] = []
    warnings: list[str] = []
    x = 0
    for o, s, header in zip(overlays, strips, headers):
        canvas.paste(s, (x, 0))
        canvas.paste(o.image, (x, head_h))
        panels.extend(Panel(p.x + x, p.y + head_h, p.width, p.height, f"{header}: {p.title}", p.scale) for p in o.panels)
        warnings.extend(f"{header}: {w}" for w in o.warnings)
        x += o.image.width + gap
    return Overlay(canvas, panels, overlays[0].image_id if overlays else "", warnings)


# ---- one image's overlay --------------------------------------------------------------------------
def _box_tuple(box: np.ndarray) -> tuple[int, int, int, int]:
    return (int(box[0]), int(box[1]), int(box[2]), int(box[3]))


def render_image(replay: RunReplay, maps: ImageMaps, rgb: np.ndarray | None = None) -> Overlay:
    """The two-panel overlay of one image (see the module docstring for the layout and colours)."""
    gt = maps.gt
    rec = replay.record(gt.image_id)
    if maps.error or rec["status"] != "ok":
        raise ReplayError(f"{gt.image_id}: cannot show a failed image ({maps.error or rec['error']})")
    if rgb is None:
        rgb = decode_rgb(gt.path)
    protocol = replay.protocol
    warnings: list[str] = []
    top5_rec = parse_ints(rec["top5_classes"])
    if top5_rec.tolist() != maps.top5_classes.tolist():
        warnings.append(f"replayed top-5 {maps.top5_classes.tolist()} differ from the record {top5_rec.tolist()}")

    guess_classes = parse_ints(rec["guess_classes"])
    guess_boxes = parse_boxes(rec["guess_boxes"])
    guess_ious = parse_floats(rec["guess_ious"])
    guess_hits = parse_ints(rec["guess_hits"]).astype(bool)
    gtk_box = parse_boxes(rec["gtk_box"])
    gt_name = replay.class_name(gt.label)

    # Recompute the boxes from the replayed maps at the protocol's thresholds: must match the records.
    boxes, _deg = boxes_for_maps(maps.maps, protocol.thresholds, rule=protocol.box_rule, connectivity=protocol.connectivity)
    threshold_names = ["loose", "tight"] if protocol.heuristic == "tight_loose" else [""]
    top1_marks: list[BoxMark] = []
    for k, slot in enumerate(protocol.slots):
        if slot.rank != 0 or k >= len(guess_boxes):
            continue
        box = guess_boxes[k]
        if boxes[0, slot.threshold_index].tolist() != box.tolist():
            warnings.append(f"replayed top-1 box {boxes[0, slot.threshold_index].tolist()} != recorded {box.tolist()}")
        kind = threshold_names[slot.threshold_index] if slot.threshold_index < len(threshold_names) else ""
        label = f"top-1{' ' + kind if kind else ''} {replay.class_name(int(guess_classes[k]))} IoU {guess_ious[k]:.2f}"
        top1_marks.append(BoxMark(_box_tuple(box), HIT_COLOR if guess_hits[k] else MISS_COLOR, label))
    gtk_marks: list[BoxMark] = []
    if len(gtk_box):
        if boxes[1, protocol.gt_known_threshold_index].tolist() != gtk_box[0].tolist():
            warnings.append(f"replayed GT-known box {boxes[1, protocol.gt_known_threshold_index].tolist()} != recorded {gtk_box[0].tolist()}")
        gtk_marks.append(
            BoxMark(_box_tuple(gtk_box[0]), HIT_COLOR if int(rec["gtk_hit"]) else MISS_COLOR, f"GT-known {gt_name} IoU {float(rec['gtk_iou']):.2f}")
        )
    gt_marks = [BoxMark(_box_tuple(b), GT_COLOR, f"GT {gt_name}" if k == 0 else "GT") for k, b in enumerate(gt.boxes)]

    top1 = int(maps.classes[0])
    flat = ["" if float(m.max()) > 0 else " - degenerate (max <= 0): no map, whole-image box" for m in maps.maps]
    scale = panel_scale(rgb.shape[0], rgb.shape[1])
    panels = [
        (render_panel(rgb, maps.maps[0], [*top1_marks, *gt_marks], scale=scale), f"CAM of the top-1 class: {replay.class_name(top1)} ({top1}){flat[0]}"),
        (render_panel(rgb, maps.maps[1], [*gtk_marks, *gt_marks], scale=scale), f"CAM of the GT class: {gt_name} ({gt.label}){flat[1]}"),
    ]
    top5 = ", ".join(f"{replay.class_name(int(c))} {s:.3f}" for c, s in zip(top5_rec, parse_floats(rec["top5_scores"])))
    top1_hit = bool(guess_hits[0]) if len(guess_hits) else False
    caption = [
        f"{gt.image_id} ({rec['width']}x{rec['height']})  GT: {gt_name} ({gt.label}), {len(gt.boxes)} box(es)",
        f"top-5: {top5}",
        f"top-1 localization: {'HIT' if top1_hit else 'miss'};  GT-known IoU {float(rec['gtk_iou']):.3f} ({'HIT' if int(rec['gtk_hit']) else 'miss'});  "
        f"boxes at t = {', '.join(f'{t:.3f}' for t in protocol.thresholds)} of max, {protocol.upsample} upsampling",
        "green = GT, yellow = guess that localizes, red = guess that misses",
        *[f"WARNING: {w}" for w in warnings],
    ]
    font = get_font(max(13, _font_size(rgb.shape[0] * scale, rgb.shape[1] * scale) - 2))
    if scale > 1:
        caption.append(f"shown enlarged {scale}x (nearest neighbour): one image pixel = {scale}x{scale} screen pixels")
    overlay = _assemble(panels, caption, font, scale=scale)
    overlay.image_id = gt.image_id
    overlay.warnings = warnings
    return overlay


def render_run_images(replay: RunReplay, image_ids: Sequence[str], *, batch_size: int = 16) -> list[Overlay]:
    """Overlays of ``image_ids`` (in that order), maps recomputed in batches."""
    return [render_image(replay, maps) for maps in replay.iter_maps(image_ids, batch_size=batch_size)]


# ---- picking images -------------------------------------------------------------------------------
def select_images(
    records: pd.DataFrame,
    *,
    images: Sequence[str] | None = None,
    worst: int | None = None,
    best: int | None = None,
    random: int | None = None,
    seed: int = 0,
) -> list[str]:
    """Image ids to show (exactly one way of choosing; see the module docstring for the orders)."""
    chosen = [x is not None and x is not False for x in (images, worst, best, random)]
    if sum(chosen) != 1:
        raise ValueError("choose exactly one of images=, worst=, best=, random=")
    ok = records[(records["status"] == "ok") & (records["gtk_box"] != "")]
    if images is not None:
        known = set(ok["image_id"])
        bad = [i for i in images if i not in known]
        if bad:
            failed = set(records.loc[records["status"] != "ok", "image_id"])
            why = [f"{i} ({'failed to decode' if i in failed else 'not in the run'})" for i in bad]
            raise ReplayError(f"cannot show {', '.join(why)}")
        return list(images)
    n = int(worst or best or random or 0)
    if n < 1:
        raise ValueError("the number of images must be >= 1")
    if random is not None:
        ids = sorted(ok["image_id"])
        rng = np.random.default_rng(seed)
        return [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
    top1_hit = ok["guess_hits"].map(lambda s: int(parse_ints(s)[0]) if len(parse_ints(s)) else 0)
    frame = pd.DataFrame({"image_id": ok["image_id"], "iou": ok["gtk_iou"], "hit": top1_hit})
    ascending = worst is not None
    frame = frame.sort_values(["iou", "hit", "image_id"], ascending=[ascending, ascending, True], kind="stable")
    return frame["image_id"].head(n).tolist()


def show(
    run_dirs: Sequence[Path | str],
    out_dir: Path | str,
    *,
    images: Sequence[str] | None = None,
    worst: int | None = None,
    best: int | None = None,
    random: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    data_root: Path | str | None = None,
    batch_size: int = 16,
) -> list[Path]:
    """`bench show`: write one overlay PNG per selected image to ``out_dir``; returns the paths.

    With two runs (e.g. the GAP and GMP twins on the same data) each PNG shows the first run's
    overlay and the second's side by side; the runs must have been made on the same data.
    Files: ``<image_id>.png`` (one run) or ``<image_id>__<suiteA>-<modelA>__vs__<suiteB>-<modelB>.png``.
    """
    if not 1 <= len(run_dirs) <= 2:
        raise ValueError("give one run, or two runs to show side by side")
    replays = [RunReplay.open(r, device=device, data_root=data_root) for r in run_dirs]
    if len(replays) == 2:
        a, b = (r.manifest["data"]["fingerprint"] for r in replays)
        if a != b:
            raise ReplayError(
                f"{replays[0].run.path} and {replays[1].run.path} were run on different data "
                f"(GT fingerprint {a[:12]} vs {b[:12]}); side by side needs the same images"
            )
    if images is None and worst is None and best is None and random is None:
        worst = 4
    ids = select_images(replays[0].records, images=images, worst=worst, best=best, random=random, seed=seed)
    if len(replays) == 2:
        select_images(replays[1].records, images=ids)  # every chosen image must be shown by both
    per_run = [render_run_images(r, ids, batch_size=batch_size) for r in replays]
    out = Path(out_dir)
    paths = []
    for k, image_id in enumerate(ids):
        if len(replays) == 1:
            overlay = per_run[0][k]
            name = f"{image_id}.png"
        else:
            overlay = compose_side_by_side([per_run[0][k], per_run[1][k]], [r.label for r in replays])
            m = [f"{r.protocol.name}-{r.manifest['model']['name']}" for r in replays]
            name = f"{image_id}__{m[0]}__vs__{m[1]}.png"
        paths.append(overlay.save(out / name))
    return paths


def recorded_command(manifest: dict[str, Any]) -> str:
    """The run's command line as one shell-quoted string (for reports)."""
    return " ".join(shlex.quote(str(a)) for a in manifest.get("command", []))
