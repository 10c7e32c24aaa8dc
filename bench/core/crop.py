"""The crop protocol of the BAS/PSOL family of WSOL papers (suites ``ilsvrc_loc_crop``, ``cub_loc_crop``).

Every rule of that protocol lives here, once (docs/protocol.md "Crop protocol" names each step):

1. :func:`to_crop` — the crop-space transform of an image AND its GT boxes (one function): the image is
   resized to ``resize x resize`` (PIL bilinear, aspect not kept), then centre-cropped to ``crop x crop``
   at offset ``int(round((resize - crop) / 2))`` (16 for 256/224). A GT box ``(x0, y0, x1, y1)`` of the
   original ``W x H`` image is scaled by ``resize / W`` and ``resize / H`` (floats, no rounding), clipped
   to the crop window ``[off, off + crop]`` (the corner is ``max(off, x0)``, the far side
   ``min(off + crop, x1)``), shifted, divided by ``crop`` and multiplied by ``crop`` again, in that
   order (the reference script normalises to [0, 1] and scales back, and the float result of
   ``((v - off) / crop) * crop`` is kept, not ``v - off``). A box partly outside the crop is cut to it;
   a box wholly outside becomes an inverted box (``x0 > x1``), which overlaps nothing: IoU 0.
2. :func:`crop_map_box` — the box of one class map: min-max normalised (float32), resized to
   ``crop x crop`` bilinear with half-pixel centres (:func:`bench.core.cam.upsample_cam`, equal to
   OpenCV's ``INTER_LINEAR`` up to float32 rounding when upsampling), foreground ``> tau`` (strict),
   8-connected components, the one with the most pixels (ties: the smallest label, i.e. the one whose
   first pixel comes first in raster order), its bounding box as ``regionprops`` gives it:
   ``(x0, y0, x1, y1)`` with an EXCLUSIVE end (``x1`` = last column + 1). No foreground (also a
   constant map, whose normalisation is 0/0) gives the whole crop ``(0, 0, crop, crop)``.
3. :func:`crop_iou` — the reference script's IoU: ``inter = max(0, xB - xA + 1) * max(0, yB - yA + 1)``,
   areas ``(x1 - x0 + 1) * (y1 - y0 + 1)``, applied as is to the exclusive-end predicted box (so that box
   counts one column and one row more than its pixels) and to the float GT boxes; the best over GT boxes.
4. hits: ``IoU > 0.5`` (strict; :func:`crop_hit`); Top-1 Loc = top-1 class right and hit, Top-5 Loc =
   GT class among the top 5 and hit, GT-known Loc = hit. The box is always the GT class's map's.
5. :func:`class_averaged` — accuracies per class first, then the mean over classes with images.
6. :func:`mean_softmax` — classification from the mean softmax of the views (ten crops of the
   ``resize x resize`` image, or one view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from bench.core.cam import upsample_cam

__all__ = [
    "CropResult",
    "crop_offset",
    "to_crop",
    "normalize_map",
    "largest_component_box",
    "crop_map_box",
    "crop_map",
    "box_at",
    "crop_iou",
    "crop_hit",
    "class_averaged",
    "ten_crop_views",
    "mean_softmax",
    "backbone_threshold",
    "view_probabilities",
]

_EIGHT = np.ones((3, 3), dtype=bool)


def crop_offset(resize: int, crop: int) -> int:
    """Top/left offset of the centre crop in the ``resize x resize`` image: ``int(round((resize - crop) / 2))``."""
    if not 0 < crop <= resize:
        raise ValueError(f"crop ({crop}) must be in (0, resize = {resize}]")
    return int(round((resize - crop) / 2.0))


@dataclass(frozen=True)
class CropResult:
    """What :func:`to_crop` returns: ``resized`` ``(resize, resize, 3)`` uint8 and ``image`` its
    ``(crop, crop, 3)`` centre crop (None without an image); ``boxes`` ``(m, 4)`` float64 crop-space GT
    boxes (None without boxes)."""

    resized: np.ndarray | None
    image: np.ndarray | None
    boxes: np.ndarray | None


def to_crop(
    rgb: np.ndarray | None = None,
    boxes: Any = None,
    *,
    image_size: tuple[int, int] | None = None,
    resize: int = 256,
    crop: int = 224,
) -> CropResult:
    """The crop-space transform of an image and/or its boxes (module docstring, step 1).

    Args:
        rgb: ``(H, W, 3)`` uint8 image, or None (boxes only).
        boxes: ``(m, 4)`` GT boxes ``(x0, y0, x1, y1)`` in original pixels, or None (image only).
        image_size: the original ``(H, W)``; needed for boxes without ``rgb``.
        resize, crop: the square resize side and the centre-crop side (256 and 224 in the papers).

    Returns:
        :class:`CropResult`.
    """
    off = crop_offset(resize, crop)
    resized = image = None
    if rgb is not None:
        from PIL import Image

        arr = np.ascontiguousarray(rgb, dtype=np.uint8)
        image_size = arr.shape[:2]
        resized = np.asarray(Image.fromarray(arr).resize((resize, resize), Image.BILINEAR))
        image = resized[off : off + crop, off : off + crop]
    out_boxes = None
    if boxes is not None:
        if image_size is None:
            raise ValueError("to_crop: boxes without an image need image_size = (H, W)")
        height, width = int(image_size[0]), int(image_size[1])
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        sx, sy = resize / width, resize / height  # the ratio first, then the product (as the script)
        scaled = b * np.array([sx, sy, sx, sy])
        low = np.maximum(float(off), scaled[:, :2])
        high = np.minimum(float(off + crop), scaled[:, 2:])
        out_boxes = ((np.concatenate([low, high], axis=1) - off) / crop) * crop
    return CropResult(resized=resized, image=image, boxes=out_boxes)


def normalize_map(cam: Any) -> np.ndarray | None:
    """Min-max normalisation in float32: ``(m - min) / (max - min)``; None for a constant map."""
    m = np.asarray(cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else cam, dtype=np.float32)
    lo, hi = m.min(), m.max()
    if not hi > lo:
        return None
    return (m - lo) / (hi - lo)


def largest_component_box(foreground: np.ndarray) -> np.ndarray | None:
    """``regionprops`` box ``(x0, y0, x1, y1)`` (exclusive end) of the largest 8-connected component of a
    bool mask; ties: the smallest label (first in raster order). None when the mask is empty."""
    labels, n = ndimage.label(foreground, structure=_EIGHT)
    if n == 0:
        return None
    best = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    rows, cols = ndimage.find_objects(labels)[best - 1]
    return np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.int64)


def crop_map_box(cam: Any, tau: float, crop: int = 224) -> tuple[np.ndarray, bool]:
    """The crop-space box of one ``(h, w)`` map of the crop (module docstring, step 2).

    Returns:
        ``(box, empty)``: ``box`` int64 ``(x0, y0, x1, y1)`` with exclusive end; ``empty`` is True when no
        pixel was foreground (then the box is the whole crop ``(0, 0, crop, crop)``).
    """
    return box_at(crop_map(cam, crop), tau, crop)


def crop_map(cam: Any, crop: int = 224) -> np.ndarray | None:
    """The min-max normalised map at ``crop x crop`` (float32; bilinear, half-pixel centres, no
    antialiasing), or None for a constant map."""
    norm = normalize_map(cam)
    if norm is not None and norm.shape != (crop, crop):
        norm = upsample_cam(torch.from_numpy(norm)[None], (crop, crop), "bilinear")[0].numpy()
    return norm


def box_at(norm: np.ndarray | None, tau: float, crop: int = 224) -> tuple[np.ndarray, bool]:
    """``(box, empty)`` of a :func:`crop_map` result at threshold ``tau`` (see :func:`crop_map_box`)."""
    box = None if norm is None else largest_component_box(norm > tau)
    if box is None:
        return np.array([0, 0, crop, crop], dtype=np.int64), True
    return box, False


def crop_iou(box: Any, gt_boxes: Any) -> np.ndarray:
    """The reference script's IoU of ``box (4,)`` with each GT box ``(m, 4)`` (module docstring, step 3):
    float64 ``(m,)``. An inverted GT box (wholly outside the crop) overlaps nothing: 0."""
    a = np.asarray(box, dtype=np.float64).reshape(4)
    g = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.maximum(0.0, np.minimum(a[2], g[:, 2]) - np.maximum(a[0], g[:, 0]) + 1.0)
    ih = np.maximum(0.0, np.minimum(a[3], g[:, 3]) - np.maximum(a[1], g[:, 1]) + 1.0)
    inter = iw * ih
    union = (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0) + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / np.where(inter > 0, union, 1.0), 0.0)


def crop_hit(iou: Any, iou_threshold: float = 0.5) -> np.ndarray:
    """A hit: ``IoU > iou_threshold`` (strict, as the papers' scripts)."""
    return np.asarray(iou, dtype=np.float64) > iou_threshold


def class_averaged(by_class: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Accuracies averaged per class first, then over classes, from ``summary.json``'s ``by_class``.

    Each class's error (percent of its localization images) becomes an accuracy ``100 - err``; classes
    without localization images are left out. Returns ``top1_loc_acc``, ``top5_loc_acc``,
    ``gt_known_loc_acc``, their error forms (``*_err`` = ``100 - acc``), ``top1_cls_acc``,
    ``top5_cls_acc`` (per class too) and ``classes`` (how many classes were averaged).
    """
    out: dict[str, Any] = {"averaging": "per class, then over classes"}
    keys = (("top1_loc", "top1_loc_err", "loc_images"), ("top5_loc", "top5_loc_err", "loc_images"),
            ("gt_known_loc", "gt_known_loc_err", "loc_images"), ("top1_cls", "top1_cls_err", "scored"),
            ("top5_cls", "top5_cls_err", "scored"))  # fmt: skip
    for name, err_key, denominator in keys:
        errs = [float(c[err_key]) for c in by_class.values() if c.get(err_key) is not None and c.get(denominator)]
        acc = None if not errs else 100.0 - float(np.mean(errs))
        out[f"{name}_acc"] = acc
        if name.endswith("loc"):
            out[f"{name}_err"] = None if acc is None else 100.0 - acc
    out["classes"] = sum(1 for c in by_class.values() if c.get("loc_images"))
    return out


def ten_crop_views(resized: np.ndarray, crop: int) -> np.ndarray:
    """The ten crops of a square image, ``(10, crop, crop, 3)``: top-left, top-right, bottom-left,
    bottom-right, centre, then the same five of the horizontally flipped image (torchvision's
    ``TenCrop`` order)."""
    h, w = resized.shape[:2]
    off_y, off_x = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    corners = ((0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (off_y, off_x))
    views = []
    for image in (resized, resized[:, ::-1]):
        views.extend(image[y : y + crop, x : x + crop] for y, x in corners)
    return np.stack(views)


def mean_softmax(logits: torch.Tensor, n_views: int) -> torch.Tensor:
    """``(B * V, C)`` logits of ``V`` views per image (image-major) -> ``(B, C)`` mean of the softmaxes."""
    probs = logits.float().softmax(dim=1)
    return probs.view(-1, n_views, probs.shape[1]).mean(dim=1)


def backbone_threshold(model_name: str, table: Any, default: float) -> tuple[float, str]:
    """The per-backbone box threshold: the value of the first key of ``table`` (pairs of name part and
    threshold) contained in the lowercase model name, else ``default``. Returns ``(tau, why)``."""
    name = model_name.lower()
    for part, tau in table:
        if part in name:
            return float(tau), f"the suite's default for backbone '{part}'"
    return float(default), "the suite's default"


def view_probabilities(model: Any, views: torch.Tensor, amp: str = "off") -> torch.Tensor | None:
    """Class probabilities from classification views ``(B, V, 3, S, S)``: the mean softmax of each image's
    ``V`` views (one forward pass of ``B * V`` images, no gradients); None when ``V == 0`` (the localized
    view classifies)."""
    from bench.core.maps import forward

    b, v = int(views.shape[0]), int(views.shape[1])
    if v == 0:
        return None
    with torch.no_grad():
        logits, _ = forward(model, views.reshape(b * v, *views.shape[2:]), amp)
    return mean_softmax(logits, v)
