"""Summaries from per-image records (the "accumulate -> summarize" half of ``COCOeval``).

:mod:`bench.core.scoring` scores each image (IoUs and hits at the protocol's IoU threshold, the
GT-known hit); :func:`summarize` derives every reported number from those per-image arrays alone,
with the hit rules of :mod:`bench.core.scoring`. Definitions: ``docs/protocol.md`` (scoring).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.scoring import topk_cls_hit, topk_hit

__all__ = ["IOU_STAT_THRESHOLDS", "OBJECT_SIZES", "ERROR_METRICS", "BREAKDOWN_KEYS", "summarize", "object_size", "breakdowns"]

#: Thresholds of the ``iou_ge_*`` summary fractions.
IOU_STAT_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


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
    gtk_hit: np.ndarray | None = None,
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
        guess_hits: ``(N, G)`` bool from :func:`bench.core.scoring.score_image`, at the
            protocol's IoU threshold; needed if ``localized`` and ``G > 0``. With ``G = 0``
            (no guesses: GT-class maps only) every top-k error is None.
        gtk_iou: ``(N,)`` GT-known best IoU; needed if ``localized``; must be finite on
            scored, non-blacklisted images (other entries are ignored).
        gtk_hit: ``(N,)`` bool, the GT-known box localizes at the protocol's IoU threshold (the
            records' ``gtk_hit``); needed if ``localized``.
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
    guessed = guess_classes.shape[1] > 0
    summary: dict[str, Any] = {
        "images": n,
        "scored": scored,
        "failed": n - scored,
        "blacklisted": int((ok & blacklisted).sum()),
        "degenerate_cams": None,
        "top1_cls_err": _percent(int((ok & ~topk_cls_hit(guess_classes, labels, 1)).sum()), scored) if guessed else None,
        "top5_cls_err": _percent(int((ok & ~topk_cls_hit(guess_classes, labels, 5)).sum()), scored) if guessed else None,
        "top1_loc_err": None,
        "top5_loc_err": None,
        "gt_known_loc_err": None,
        "mean_iou": None,
        **{f"iou_ge_{t}": None for t in IOU_STAT_THRESHOLDS},
        "loc_images": None,
    }
    if not localized:
        return summary

    if gtk_iou is None or gtk_hit is None or degenerate is None:
        raise ValueError("localized=True needs gtk_iou, gtk_hit and degenerate")
    if guess_hits is None:
        if guessed:
            raise ValueError("localized=True with guesses needs guess_hits")
        guess_hits = np.zeros(guess_classes.shape, dtype=bool)
    guess_hits = np.asarray(guess_hits, dtype=bool)
    if guess_hits.shape != guess_classes.shape:
        raise ValueError(
            f"guess_hits shape {guess_hits.shape} != guess_classes shape {guess_classes.shape}"
        )
    gtk_hit = _bool_vector(gtk_hit, n, "gtk_hit")
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
            "top1_loc_err": _percent(int((loc & ~topk_hit(guess_hits, 1)).sum()), n_loc) if guessed else None,
            "top5_loc_err": _percent(int((loc & ~topk_hit(guess_hits, 5)).sum()), n_loc) if guessed else None,
            "gt_known_loc_err": _percent(int((loc & ~gtk_hit).sum()), n_loc),
            "mean_iou": float(iou.mean()) if n_loc else None,
            **{
                f"iou_ge_{t}": _percent(int((iou >= t).sum()), n_loc)
                for t in IOU_STAT_THRESHOLDS
            },
            "loc_images": n_loc,
        }
    )
    return summary


#: Object-size bins of the per-size breakdown: the largest GT box's share of the image
#: (:func:`bench.core.scoring.gt_area_fraction`): small < 0.1 <= medium <= 0.5 < large.
OBJECT_SIZES: tuple[str, ...] = ("small", "medium", "large")

#: The five error metrics of a summary (percent), in table order.
ERROR_METRICS: tuple[str, ...] = ("top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err")

#: The summary keys each breakdown group reports.
BREAKDOWN_KEYS: tuple[str, ...] = ("images", "scored", *ERROR_METRICS, "mean_iou", "loc_images")


def object_size(gt_area_frac: Any) -> np.ndarray:
    """Size bin per image: ``'small'`` (< 0.1), ``'medium'`` (0.1 - 0.5), ``'large'`` (> 0.5); ``''`` for NaN."""
    frac = np.asarray(gt_area_frac, dtype=np.float64)
    out = np.where(frac < 0.1, "small", np.where(frac > 0.5, "large", "medium")).astype(object)
    out[~np.isfinite(frac)] = ""
    return out


def breakdowns(arrays: dict[str, np.ndarray], class_ids: Any = None, *, localized: bool = True) -> dict[str, Any]:
    """Per object size and per GT class: :func:`summarize` of each group's images (the same rules).

    Args:
        arrays: :func:`summarize`'s per-image arrays plus ``gt_area_frac`` ``(N,)`` (NaN where unknown,
            e.g. failed images: they fall in no size group).
        class_ids: class id per label index (keys of ``by_class``); default the label as text.
        localized: as for :func:`summarize`.

    Returns:
        ``{"by_size": {size: {key: value}}, "by_class": {class id: {key: value}}}`` with the keys of
        :data:`BREAKDOWN_KEYS`; sizes in :data:`OBJECT_SIZES` order (empty ones left out), classes in
        label order (classes without images left out).
    """
    fields = {k: np.asarray(v) for k, v in arrays.items() if k != "gt_area_frac"}
    labels = fields["labels"]

    def group(mask: np.ndarray) -> dict[str, Any]:
        sub = {k: v[mask] for k, v in fields.items()}
        summary = summarize(**sub, localized=localized)
        return {k: summary[k] for k in BREAKDOWN_KEYS}

    sizes = object_size(arrays["gt_area_frac"])
    by_size = {name: group(sizes == name) for name in OBJECT_SIZES if (sizes == name).any()}

    def name_of(label: int) -> str:
        return str(class_ids[label]) if class_ids is not None and 0 <= label < len(class_ids) else str(label)

    by_class = {name_of(int(c)): group(labels == c) for c in np.unique(labels)}
    return {"by_size": by_size, "by_class": by_class}


def _bool_vector(values: Any, n: int, name: str) -> np.ndarray:
    """``values`` as a bool ``(n,)`` vector; raises ValueError on a length mismatch."""
    arr = np.asarray(values, dtype=bool).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have N={n} entries, got {arr.shape[0]}")
    return arr
