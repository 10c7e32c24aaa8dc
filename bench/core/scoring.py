"""One per-image outcome path: GT + guesses + GT-known box -> the image's record.

Everything the harness reports derives from the records this module makes, as in pycocotools'
``COCOeval`` (evaluate -> accumulate -> summarize): :func:`score_image` scores one image at the
protocol's IoU threshold, :func:`image_record` turns one image's maps into its record (boxes,
IoUs, hits), and :mod:`bench.core.metrics` summarises records. The hit rules live here and only
here: :func:`is_hit` (a guess localizes), :func:`topk_hit` (one of the first k guesses localizes),
:func:`topk_cls_hit` (one of the first k guessed classes is right). The IoU is :func:`iou_inclusive`.

Boxes are ``(xmin, ymin, xmax, ymax)``, 0-based, with INCLUSIVE pixel indices; the ILSVRC devkit's
``+1`` convention applies: the box ``(0, 0, 0, 0)`` has area 1. The exact definitions are in
``docs/protocol.md`` (scoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.core.records import IOU_DIGITS, format_boxes, format_floats, format_ints

if TYPE_CHECKING:  # only for annotations: the protocol and data modules do not import this one
    import torch

    from bench.core.protocol import Protocol

__all__ = [
    "iou_inclusive",
    "best_iou",
    "is_hit",
    "iou_passes",
    "topk_hit",
    "topk_cls_hit",
    "localizes",
    "gt_area_fraction",
    "ImageEval",
    "score_image",
    "image_record",
    "failed_record",
]

# ---------------------------------------------------------------------------------------- IoU
def _as_boxes(boxes: Any, name: str) -> np.ndarray:
    """``boxes`` as float64 ``(..., 4)``; ValueError on a bad shape, NaN/inf or ``x2 < x1``."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a non-finite coordinate")
    if np.any(arr[..., 2] < arr[..., 0]) or np.any(arr[..., 3] < arr[..., 1]):
        raise ValueError(f"{name} holds a box with x2 < x1 or y2 < y1 (boxes are xyxy inclusive)")
    return arr


def iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of inclusive-pixel boxes, broadcasting ``a (..., 4)`` against ``b (..., 4)``.

    ``iw = min(a.x2, b.x2) - max(a.x1, b.x1) + 1`` and ``ih`` likewise; if ``iw <= 0`` or
    ``ih <= 0`` the IoU is 0, else ``iw*ih / (area_a + area_b - iw*ih)`` with
    ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``. Computed in float64 (exact integer areas, one
    rounding in the division), as the devkit does in double precision.

    Returns:
        float64 array of the broadcast shape without the last axis.
    """
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1.0
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1.0
    area_a = (a[..., 2] - a[..., 0] + 1.0) * (a[..., 3] - a[..., 1] + 1.0)
    area_b = (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0)
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    return np.where(overlap, inter / (area_a + area_b - inter), 0.0)


def best_iou(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """For each box ``(g, 4)``, its best IoU over the GT boxes ``(m, 4)``: float64 ``(g,)``.

    This is ``1 -`` the devkit's error, which takes the minimum over GT boxes.

    Raises:
        ValueError: no GT box (``m == 0``): every scored image has at least one.
    """
    boxes = _as_boxes(boxes, "boxes").reshape(-1, 4)
    gt_boxes = _as_boxes(gt_boxes, "gt_boxes").reshape(-1, 4)
    if gt_boxes.shape[0] == 0:
        raise ValueError("best_iou needs at least one GT box")
    return iou_inclusive(boxes[:, None, :], gt_boxes[None, :, :]).max(axis=1)


# ---------------------------------------------------------------------------------- hit rules
def iou_passes(ious: Any, iou_threshold: float, strict: bool = False) -> np.ndarray:
    """``ious >= iou_threshold`` (the devkit: equality counts), or ``>`` with ``strict`` (the crop
    protocol's ``scoring.strict``: IoU > 0.5 as BAS's script has it)."""
    ious = np.asarray(ious)
    return ious > iou_threshold if strict else ious >= iou_threshold


def is_hit(guess_classes: Any, label: Any, ious: Any, iou_threshold: float, strict: bool = False) -> np.ndarray:
    """A guess localizes iff its class is the GT class and its best IoU passes ``iou_threshold``
    (:func:`iou_passes`: ``>=``, or ``>`` with ``strict``).

    Broadcasts: ``guess_classes`` and ``ious`` of the same shape, ``label`` a scalar or an array that
    broadcasts against them (e.g. ``labels[:, None]``). Equality at the threshold counts unless ``strict``.
    """
    return (np.asarray(guess_classes) == np.asarray(label)) & iou_passes(ious, iou_threshold, strict)


def topk_hit(hits: Any, k: int) -> np.ndarray:
    """``(N,)`` bool: one of an image's first ``k`` guesses localizes (``hits`` is ``(N, G)``).

    With ``G < k`` the ``G`` guesses there are count (top-5 of a 3-guess protocol is top-3).
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be (N, G), got shape {hits.shape}")
    return hits[:, :k].any(axis=1)


def topk_cls_hit(guess_classes: Any, labels: Any, k: int) -> np.ndarray:
    """``(N,)`` bool: one of an image's first ``k`` guessed classes is its GT class.

    ``guess_classes`` is ``(N, G)`` and may repeat classes (``tight_loose``: c1, c1, c2, c2, c3).
    """
    guess_classes = np.asarray(guess_classes)
    if guess_classes.ndim != 2:
        raise ValueError(f"guess_classes must be (N, G), got shape {guess_classes.shape}")
    return topk_hit(guess_classes == np.asarray(labels).reshape(-1, 1), k)


def localizes(head: str, method: str) -> bool:
    """Whether a run produces boxes: CAM needs a GAP/GMP head; gradient maps work for any network.

    ``head`` is ``'gap'``, ``'gmp'``, ``'fc'`` (a fully connected head), ``'maps'`` (a `bench score`
    run of maps made elsewhere) or ``'center'`` (the model-free centre baseline), ``method`` the map method.
    """
    return head in ("gap", "gmp", "maps", "center") or method != "cam"


def gt_area_fraction(gt_boxes: np.ndarray, size: tuple[int, int]) -> float:
    """The object's size: the largest GT box's area (inclusive pixels) as a share of the image.

    ``size`` is the image's ``(height, width)``; the result is in ``(0, 1]``. The per-size
    breakdowns bin it as small ``< 0.1``, medium ``0.1 - 0.5``, large ``> 0.5``
    (:data:`bench.core.metrics.OBJECT_SIZES`).
    """
    boxes = _as_boxes(gt_boxes, "gt_boxes").reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)
    return float(areas.max() / (float(size[0]) * float(size[1])))


# ------------------------------------------------------------------------------- one image
@dataclass
class ImageEval:
    """Per-image evaluation.

    Attributes:
        guess_ious: ``(g,)`` float64, each guess box's best IoU over the GT boxes (reported
            whatever the guessed class).
        guess_hits: ``(g,)`` bool, the guess localizes: right class and IoU >= threshold.
        gtk_iou: best IoU of the GT-class box (GT-known setting); NaN if not computed.
        gtk_hit: ``gtk_iou >= threshold`` (False if not computed).
    """

    guess_ious: np.ndarray
    guess_hits: np.ndarray
    gtk_iou: float
    gtk_hit: bool


def score_image(
    label: int,
    gt_boxes: np.ndarray,
    guess_classes: np.ndarray,
    guess_boxes: np.ndarray,
    gtk_box: np.ndarray | None,
    *,
    iou_threshold: float,
) -> ImageEval:
    """Score one image's guesses by the ILSVRC devkit rule at the protocol's IoU threshold.

    Args:
        label: the image's GT class index.
        gt_boxes: ``(m, 4)`` GT boxes (all of the GT class), ``m >= 1``.
        guess_classes: ``(g,)`` guessed class per guess, in guess order (``g`` may be 0).
        guess_boxes: ``(g, 4)`` box per guess.
        gtk_box: ``(4,)`` box from the GT class's own map (GT-known), or None.
        iou_threshold: a hit needs ``IoU >= iou_threshold`` (equality counts).

    Returns:
        :class:`ImageEval`: guess hits by :func:`is_hit`; the GT-known hit is
        ``gtk_iou >= iou_threshold`` (the class is right by construction).
    """
    guess_classes = np.asarray(guess_classes).reshape(-1)
    guess_boxes = np.asarray(guess_boxes).reshape(-1, 4)
    if guess_classes.shape[0] != guess_boxes.shape[0]:
        raise ValueError(
            f"{guess_classes.shape[0]} guess classes but {guess_boxes.shape[0]} guess boxes"
        )
    ious = best_iou(guess_boxes, gt_boxes) if len(guess_boxes) else np.zeros(0, np.float64)
    hits = is_hit(guess_classes, label, ious, iou_threshold)
    if gtk_box is None:
        gtk_iou = float("nan")
    else:
        gtk_iou = float(best_iou(np.asarray(gtk_box).reshape(1, 4), gt_boxes)[0])
    return ImageEval(
        guess_ious=ious,
        guess_hits=hits,
        gtk_iou=gtk_iou,
        gtk_hit=bool(is_hit(label, label, gtk_iou, iou_threshold)),  # NaN >= t is False
    )


# ------------------------------------------------------------------------------- records
def _record(image_id: str, label: int, blacklisted: bool, status: str, error: str = "", width: int = 0, height: int = 0) -> dict[str, Any]:
    """A record with every column of :data:`bench.core.records.RECORD_COLUMNS`, nothing scored yet."""
    return {
        "image_id": image_id,
        "label": label,
        "status": status,
        "error": error,
        "blacklisted": int(blacklisted),
        "width": width,
        "height": height,
        "top5_classes": "",
        "top5_scores": "",
        "guess_classes": "",
        "guess_boxes": "",
        "guess_ious": "",
        "guess_hits": "",
        "gtk_box": "",
        "gtk_iou": "",
        "gtk_hit": 0,
        "degenerate": 0,
        "gt_area_frac": "",
    }


def failed_record(gt: Any, blacklisted: bool, error: str) -> dict[str, Any]:
    """The record of an image that could not be scored (``status = failed``, ``error`` says why).

    ``gt`` is the image's ground truth (``image_id`` and ``label`` are read from it).
    """
    return _record(gt.image_id, gt.label, blacklisted, "failed", error)


def image_record(
    protocol: Protocol,
    gt: Any,
    blacklisted: bool,
    size: tuple[int, int],
    top_classes: np.ndarray | None,
    top_scores: np.ndarray | None,
    maps: torch.Tensor | np.ndarray | None,
    map_classes: Any = None,
) -> dict[str, Any]:
    """The per-image record of one scored image: boxes from its maps, then :func:`score_image`.

    Args:
        protocol: the resolved protocol (box rule, thresholds, guess slots, IoU threshold, upsample).
        gt: the image's ground truth (``image_id``, ``label``, ``boxes`` ``(m, 4)`` inclusive).
        blacklisted: the image is on the protocol's blacklist (kept out of localization denominators).
        size: the image's original ``(height, width)`` in pixels; boxes live in these pixels.
        top_classes, top_scores: the ranked classes (at least 5 where guesses are made) and their
            scores; ``top_classes=None`` for GT-class maps only (saved ``.npy`` maps): no guesses,
            only the GT-known box and IoU are filled.
        maps: ``(m, h, w)`` maps at any resolution (torch tensor or numpy array), resized to
            ``size`` with the protocol's upsample mode unless already ``(H, W)``; None for models
            that do not localize (classification only).
        map_classes: ``(m,)`` class index of each map. Guess slot of rank r uses the first map of
            class ``top_classes[r]``; the GT-known box uses the first map of class ``gt.label``.
            Default: ``top_classes[:k]`` then ``gt.label`` (the engine's order).

    Returns:
        The record (columns :data:`bench.core.records.RECORD_COLUMNS`). The engine, ``bench rescore`` and
        ``bench score`` all call this function, so equal maps give byte-equal records.

    Raises:
        ValueError: a map needed for a guess or for the GT class is missing.
    """
    if protocol.box_rule == "crop_largest_cc":  # the crop protocol: maps and boxes in crop pixels
        return _crop_record(protocol, gt, blacklisted, size, top_classes, top_scores, maps, map_classes)
    from bench.core.boxes import boxes_for_maps
    from bench.core.maps import resize_maps

    record, guess_classes = _record_head(protocol, gt, blacklisted, size, top_classes, top_scores)
    slots = protocol.slots if top_classes is not None else ()
    if maps is None:
        return record
    map_classes = _map_classes(protocol, gt, top_classes, maps, map_classes)

    def first_map(cls: int, what: str) -> int:
        if cls not in map_classes:
            raise ValueError(f"no map for class {cls} ({what}); the maps are of classes {map_classes}")
        return map_classes.index(cls)

    needed = [first_map(int(top_classes[s.rank]), f"guess of rank {s.rank + 1}") for s in slots]
    gt_map = first_map(int(gt.label), "the GT class")
    used = sorted(set(needed) | {gt_map})  # box only the maps the record needs
    position = {m: i for i, m in enumerate(used)}
    up = resize_maps(maps[used], size, protocol.upsample)
    boxes, degenerate = boxes_for_maps(up, protocol.thresholds, rule=protocol.box_rule, connectivity=protocol.connectivity)
    guess_boxes = np.stack([boxes[position[m], s.threshold_index] for m, s in zip(needed, slots)]) if slots else np.zeros((0, 4), np.int64)
    gtk_box = boxes[position[gt_map], protocol.gt_known_threshold_index]
    scored = score_image(gt.label, gt.boxes, guess_classes, guess_boxes, gtk_box, iou_threshold=protocol.iou_threshold)
    if slots:
        record.update(
            guess_boxes=format_boxes(guess_boxes),
            guess_ious=format_floats(scored.guess_ious, IOU_DIGITS),
            guess_hits=format_ints(scored.guess_hits.astype(int)),
        )
    record.update(
        gtk_box=format_ints(gtk_box),
        gtk_iou=f"{scored.gtk_iou:.{IOU_DIGITS}f}",
        gtk_hit=int(scored.gtk_hit),
        degenerate=int(bool(np.asarray(degenerate).any())),
    )
    return record


def _record_head(
    protocol: Protocol, gt: Any, blacklisted: bool, size: tuple[int, int], top_classes: np.ndarray | None,
    top_scores: np.ndarray | None,
) -> tuple[dict[str, Any], np.ndarray]:
    """A record's columns that need no map: identity, original ``(height, width)``, GT area, the ranked
    classes and scores and the guessed classes (one per protocol slot; none without ranked classes).
    Returns ``(record, guess_classes)``."""
    height, width = size
    record = _record(gt.image_id, gt.label, blacklisted, "ok", width=width, height=height)
    record["gt_area_frac"] = f"{gt_area_fraction(gt.boxes, size):.6f}"
    slots = protocol.slots if top_classes is not None else ()
    guess_classes = np.array([top_classes[s.rank] for s in slots], dtype=np.int64)
    if top_classes is not None:
        record.update(
            top5_classes=format_ints(top_classes),
            top5_scores=format_floats(top_scores) if top_scores is not None else "",
            guess_classes=format_ints(guess_classes),
        )
    return record, guess_classes


def _map_classes(protocol: Protocol, gt: Any, top_classes: np.ndarray | None, maps: Any, map_classes: Any) -> list[int]:
    """The class index of each map: ``map_classes`` as ints, by default the engine's order (the top
    ``ranks_needed`` classes, then the GT class). Raises ValueError when their count is not the maps'."""
    if map_classes is None:
        map_classes = [int(c) for c in top_classes[: protocol.ranks_needed]] + [int(gt.label)]
    map_classes = [int(c) for c in map_classes]
    if len(map_classes) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(map_classes)} map classes")
    return map_classes


def _crop_record(
    protocol: Protocol,
    gt: Any,
    blacklisted: bool,
    size: tuple[int, int],
    top_classes: np.ndarray | None,
    top_scores: np.ndarray | None,
    maps: Any,
    map_classes: Any,
) -> dict[str, Any]:
    """:func:`image_record` of the crop protocol (:mod:`bench.core.crop`; docs/protocol.md "Crop protocol").

    ``maps`` are maps of the centre crop (any resolution); only the GT class's map is boxed, and its box
    serves every guess (Top-1 Loc = top-1 class right and hit, Top-5 Loc = GT class in the top 5 and
    hit). Columns as :func:`image_record` with these meanings: ``gtk_box`` and ``guess_boxes`` hold the
    crop-space box with its EXCLUSIVE end (``regionprops``), ``gtk_iou`` / ``guess_ious`` the crop IoU
    (:func:`bench.core.crop.crop_iou`), hits ``IoU > iou_threshold`` (``>=`` unless ``scoring.strict``),
    ``degenerate`` = no foreground pixel (the box is the whole crop), ``crop_gt_boxes`` the GT boxes
    in crop pixels. ``width``/``height`` and ``gt_area_frac`` stay those of the original image.
    """
    from bench.core.crop import crop_iou, crop_map_box, to_crop

    record, guess_classes = _record_head(protocol, gt, blacklisted, size, top_classes, top_scores)
    crop_gt = to_crop(boxes=gt.boxes, image_size=size, resize=protocol.crop_resize, crop=protocol.crop_size).boxes
    record["crop_gt_boxes"] = ";".join(format_floats(b) for b in crop_gt)
    if maps is None:
        return record
    map_classes = _map_classes(protocol, gt, top_classes, maps, map_classes)
    if int(gt.label) not in map_classes:
        raise ValueError(f"no map for class {gt.label} (the GT class); the maps are of classes {map_classes}")
    box, empty = crop_map_box(maps[map_classes.index(int(gt.label))], protocol.thresholds[0], protocol.crop_size)
    iou = float(crop_iou(box, crop_gt).max())
    hit = bool(iou_passes(iou, protocol.iou_threshold, protocol.strict_iou))
    if len(guess_classes):
        record.update(
            guess_boxes=format_boxes(np.tile(box, (len(guess_classes), 1))),
            guess_ious=format_floats(np.full(len(guess_classes), iou), IOU_DIGITS),
            guess_hits=format_ints(is_hit(guess_classes, int(gt.label), iou, protocol.iou_threshold, protocol.strict_iou)),
        )
    record.update(gtk_box=format_ints(box), gtk_iou=f"{iou:.{IOU_DIGITS}f}", gtk_hit=int(hit), degenerate=int(empty))
    return record
