"""ILSVRC devkit-exact localization scoring (docs/protocol.md).

Split like pycocotools' ``COCOeval``: :func:`evaluate_image` scores one image (IoUs and hits
of its guesses, plus the GT-known box), the caller stacks those per-image results into arrays,
and :func:`summarize` derives every reported number from the arrays alone.

Boxes are ``(xmin, ymin, xmax, ymax)``, 0-based, with INCLUSIVE pixel indices; the devkit's
``+1`` convention applies: the box ``(0, 0, 0, 0)`` has area 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "IOU_THRESHOLD",
    "IOU_STAT_THRESHOLDS",
    "iou_inclusive",
    "best_iou",
    "ImageEval",
    "evaluate_image",
    "summarize",
]

#: A guess localizes when its IoU with some GT box is at least this (0.5 exactly counts).
IOU_THRESHOLD: float = 0.5

#: Thresholds of the ``iou_ge_*`` summary fractions.
IOU_STAT_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


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


def evaluate_image(
    label: int,
    gt_boxes: np.ndarray,
    guess_classes: np.ndarray,
    guess_boxes: np.ndarray,
    gtk_box: np.ndarray | None,
    iou_threshold: float = IOU_THRESHOLD,
) -> ImageEval:
    """Score one image's guesses by the ILSVRC devkit rule.

    Args:
        label: the image's GT class index.
        gt_boxes: ``(m, 4)`` GT boxes (all of the GT class), ``m >= 1``.
        guess_classes: ``(g,)`` guessed class per guess, in guess order.
        guess_boxes: ``(g, 4)`` box per guess.
        gtk_box: ``(4,)`` box from the GT class's own map (GT-known), or None.
        iou_threshold: a hit needs ``IoU >= iou_threshold`` (equality counts).

    Returns:
        :class:`ImageEval`. A guess hits iff its class equals ``label`` and its best IoU over
        the GT boxes is ``>= iou_threshold``; a wrong-class guess never hits, whatever its IoU.
    """
    guess_classes = np.asarray(guess_classes).reshape(-1)
    guess_boxes = np.asarray(guess_boxes).reshape(-1, 4)
    if guess_classes.shape[0] != guess_boxes.shape[0]:
        raise ValueError(
            f"{guess_classes.shape[0]} guess classes but {guess_boxes.shape[0]} guess boxes"
        )
    ious = best_iou(guess_boxes, gt_boxes)
    hits = (guess_classes == label) & (ious >= iou_threshold)
    if gtk_box is None:
        gtk_iou = float("nan")
    else:
        gtk_iou = float(best_iou(np.asarray(gtk_box).reshape(1, 4), gt_boxes)[0])
    return ImageEval(
        guess_ious=ious,
        guess_hits=hits,
        gtk_iou=gtk_iou,
        gtk_hit=bool(gtk_iou >= iou_threshold),  # NaN >= t is False
    )


def _percent(count: int, denominator: int) -> float | None:
    """``100 * count / denominator`` as a float, or None for an empty denominator."""
    return None if denominator == 0 else 100.0 * count / denominator


def summarize(
    *,
    labels: np.ndarray,
    ok: np.ndarray,
    blacklisted: np.ndarray,
    guess_classes: np.ndarray,
    guess_hits: np.ndarray | None = None,
    gtk_iou: np.ndarray | None = None,
    degenerate: np.ndarray | None = None,
    localized: bool = True,
) -> dict[str, Any]:
    """Summary numbers from per-image arrays (N images, G guesses per image in order).

    Args:
        labels: ``(N,)`` GT class per image.
        ok: ``(N,)`` bool, the image was processed (False: failed, excluded everywhere).
        blacklisted: ``(N,)`` bool, on the devkit's localization blacklist (still counted for
            classification).
        guess_classes: ``(N, G)`` guessed classes; they may repeat (``tight_loose``:
            c1, c1, c2, c2, c3). With ``G < 5`` top-5 uses the ``G`` guesses there are.
        guess_hits: ``(N, G)`` bool from :func:`evaluate_image`; needed if ``localized``.
        gtk_iou: ``(N,)`` GT-known best IoU; needed if ``localized``; must be finite on
            scored, non-blacklisted images (other entries are ignored).
        degenerate: ``(N,)`` bool, the image's maps had max <= 0; needed if ``localized``.
        localized: False for a classification-only model: every localization key is None.

    Returns:
        ``images``, ``scored``, ``failed``, ``blacklisted`` (ok & blacklisted),
        ``degenerate_cams`` (ok & degenerate), ``top1_cls_err``, ``top5_cls_err`` (percent of
        scored images), ``top1_loc_err``, ``top5_loc_err``, ``gt_known_loc_err``, ``iou_ge_0.3``,
        ``iou_ge_0.5``, ``iou_ge_0.7`` (percent of localization images: scored and not
        blacklisted), ``mean_iou`` (0-1) and ``loc_images`` (that denominator). Counts are int,
        rates float; a rate with an empty denominator is None.
    """
    labels = np.asarray(labels).reshape(-1)
    n = labels.shape[0]
    ok = _bool_vector(ok, n, "ok")
    blacklisted = _bool_vector(blacklisted, n, "blacklisted")
    guess_classes = np.asarray(guess_classes)
    if guess_classes.ndim != 2 or guess_classes.shape[0] != n:
        raise ValueError(f"guess_classes must be (N={n}, G), got {guess_classes.shape}")

    scored = int(ok.sum())
    cls_ok = guess_classes == labels[:, None]
    summary: dict[str, Any] = {
        "images": n,
        "scored": scored,
        "failed": n - scored,
        "blacklisted": int((ok & blacklisted).sum()),
        "degenerate_cams": None,
        "top1_cls_err": _percent(int((ok & ~cls_ok[:, :1].any(axis=1)).sum()), scored),
        "top5_cls_err": _percent(int((ok & ~cls_ok[:, :5].any(axis=1)).sum()), scored),
        "top1_loc_err": None,
        "top5_loc_err": None,
        "gt_known_loc_err": None,
        "mean_iou": None,
        **{f"iou_ge_{t}": None for t in IOU_STAT_THRESHOLDS},
        "loc_images": None,
    }
    if not localized:
        return summary

    if guess_hits is None or gtk_iou is None or degenerate is None:
        raise ValueError("localized=True needs guess_hits, gtk_iou and degenerate")
    guess_hits = np.asarray(guess_hits, dtype=bool)
    if guess_hits.shape != guess_classes.shape:
        raise ValueError(
            f"guess_hits shape {guess_hits.shape} != guess_classes shape {guess_classes.shape}"
        )
    gtk_iou = np.asarray(gtk_iou, dtype=np.float64).reshape(-1)
    if gtk_iou.shape[0] != n:
        raise ValueError(f"gtk_iou must have N={n} entries, got {gtk_iou.shape[0]}")
    degenerate = _bool_vector(degenerate, n, "degenerate")

    loc = ok & ~blacklisted
    n_loc = int(loc.sum())
    iou = gtk_iou[loc]
    if not np.all(np.isfinite(iou)):
        raise ValueError(
            f"gtk_iou is not finite for {int((~np.isfinite(iou)).sum())} scored, "
            "non-blacklisted images"
        )
    summary.update(
        {
            "degenerate_cams": int((ok & degenerate).sum()),
            "top1_loc_err": _percent(int((loc & ~guess_hits[:, :1].any(axis=1)).sum()), n_loc),
            "top5_loc_err": _percent(int((loc & ~guess_hits[:, :5].any(axis=1)).sum()), n_loc),
            "gt_known_loc_err": _percent(int((iou < IOU_THRESHOLD).sum()), n_loc),
            "mean_iou": float(iou.mean()) if n_loc else None,
            **{
                f"iou_ge_{t}": _percent(int((iou >= t).sum()), n_loc)
                for t in IOU_STAT_THRESHOLDS
            },
            "loc_images": n_loc,
        }
    )
    return summary


def _bool_vector(values: Any, n: int, name: str) -> np.ndarray:
    """``values`` as a bool ``(n,)`` vector; raises ValueError on a length mismatch."""
    arr = np.asarray(values, dtype=bool).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have N={n} entries, got {arr.shape[0]}")
    return arr
