"""Threshold curves: localization accuracy against the CAM threshold, for one finished run.

For every image of a run, the maps of the top-1 class and of the GT class are recomputed by
replaying the run (:class:`bench.run.replay.RunReplay`: same model and weights, verified; same input
transform and upsampling), and the run's box rule is applied at each threshold of a sweep with
ONE call per map (``bench.core.boxes.largest_cc_boxes(cam, thresholds)``). At threshold ``t``:

* ``gt_known_loc_acc``: % of localization images whose GT-class box at ``t`` has IoU >= the
  protocol's ``iou_threshold`` with at least one GT box (100 - GT-known loc. error at ``t``);
* ``top1_loc_acc``: % whose top-1 class is the GT class and whose top-1 box at ``t`` localizes
  (100 - top-1 loc. error of a one-threshold ``top5`` protocol at ``t``);
* ``mean_gtk_iou``: mean best IoU of the GT-class box (0-1);
* ``mean_gtk_box_frac``: mean area of the GT-class box as a fraction of the image;

and, constant over ``t`` (references for the plot): ``top1_cls_acc`` (% top-1 class correct) and
``whole_image_acc`` (% of images a whole-image box would localize: the trivial baseline).
Denominators are those of the summary: localization metrics over decoded images not on the
blacklist (``images``), classification over decoded images. At the protocol's threshold (0.20 for
``ilsvrc_loc``) the GT-known and top-1 accuracies equal ``100 - gt_known_loc_err`` and
``100 - top1_loc_err`` of the run's summary (the tests check it). For ``tight_loose`` runs the
curve uses a single box per class at each ``t`` (the sweep replaces the loose/tight pair).

Outputs: :func:`threshold_curve` returns a pandas DataFrame (one row per threshold; ``attrs`` hold
the run, model, suite and protocol thresholds); :func:`save_curve` writes it as CSV plus a PNG plot
drawn with Pillow (:func:`plot_curve`). :func:`threshold_boxes` exposes the per-image boxes for
other sweeps (e.g. MaxBoxAcc).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from tqdm import tqdm

from bench.core.boxes import BOX_RULES
from bench.core.scoring import best_iou, is_hit, topk_cls_hit
from bench.report.overlays import get_font
from bench.run.replay import RunReplay

__all__ = [
    "DEFAULT_THRESHOLDS",
    "CURVE_COLUMNS",
    "ThresholdBoxes",
    "threshold_boxes",
    "curve_from_boxes",
    "threshold_curve",
    "plot_curve",
    "save_curve",
    "best_threshold",
]

#: 0.00, 0.05, ..., 0.95 (rounded to 2 decimals so 0.20 is exactly the protocol's 0.2).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(20))

CURVE_COLUMNS = [
    "threshold",
    "images",
    "gt_known_loc_acc",
    "top1_loc_acc",
    "mean_gtk_iou",
    "mean_gtk_box_frac",
    "top1_cls_acc",
    "whole_image_acc",
]


@dataclass
class ThresholdBoxes:
    """Per-image boxes of the top-1 and GT-class maps at every threshold (``N`` images, ``T`` thresholds).

    Attributes:
        thresholds: ``(T,)``.
        image_ids: ``N`` ids in data-set order.
        labels, top1_classes: ``(N,)`` GT class and replayed top-1 class.
        sizes: ``(N, 2)`` original ``(height, width)``.
        gt_boxes: ``N`` arrays ``(n_i, 4)`` of GT boxes.
        localizable: ``(N,)`` True when the image counts for localization (not blacklisted).
        top1_boxes, gtk_boxes: ``(N, T, 4)`` int64 inclusive boxes.
        gtk_min, gtk_max: ``(N,)`` min and max of the GT-class map (``min > 0`` means the map is
            foreground everywhere at ``t = 0``: its box there is the whole image).
        iou_threshold: the protocol's IoU threshold.
        top1_mismatches: images whose replayed top-1 differs from the run's record (expected 0).
    """

    thresholds: np.ndarray
    image_ids: list[str]
    labels: np.ndarray
    top1_classes: np.ndarray
    sizes: np.ndarray
    gt_boxes: list[np.ndarray]
    localizable: np.ndarray
    top1_boxes: np.ndarray
    gtk_boxes: np.ndarray
    gtk_min: np.ndarray
    gtk_max: np.ndarray
    iou_threshold: float
    top1_mismatches: int = 0


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    ts = np.asarray([float(t) for t in thresholds], dtype=np.float64)
    if ts.size == 0:
        raise ValueError("give at least one threshold")
    if not np.all((ts >= 0.0) & (ts < 1.0)):
        raise ValueError(f"thresholds are fractions of the map's max in [0, 1), got {ts.tolist()}")
    if np.any(np.diff(ts) <= 0):
        raise ValueError(f"thresholds must be strictly increasing, got {ts.tolist()}")
    return ts


def threshold_boxes(
    replay: RunReplay,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    limit: int | None = None,
    *,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = True,
) -> ThresholdBoxes:
    """Replay the run's decoded images (the first ``limit`` of them) and box both maps at every threshold."""
    ts = _check_thresholds(thresholds)
    rule = BOX_RULES[replay.protocol.box_rule]
    connectivity = replay.protocol.connectivity
    ids = replay.run_image_ids(ok_only=True)
    if limit is not None:
        ids = ids[: max(0, int(limit))]
    records = replay.records.set_index("image_id")
    n, t = len(ids), len(ts)
    out = ThresholdBoxes(
        thresholds=ts,
        image_ids=list(ids),
        labels=np.zeros(n, np.int64),
        top1_classes=np.zeros(n, np.int64),
        sizes=np.zeros((n, 2), np.int64),
        gt_boxes=[],
        localizable=np.zeros(n, bool),
        top1_boxes=np.zeros((n, t, 4), np.int64),
        gtk_boxes=np.zeros((n, t, 4), np.int64),
        gtk_min=np.zeros(n),
        gtk_max=np.zeros(n),
        iou_threshold=float(replay.protocol.iou_threshold),
    )
    maps_iter = replay.iter_maps(ids, batch_size=batch_size, workers=workers)
    bar = tqdm(maps_iter, total=n, desc=f"threshold curve {replay.label} ({replay.source})", unit="img", disable=not progress)
    for i, maps in enumerate(bar):
        if maps.error:
            raise RuntimeError(f"{maps.gt.image_id} decoded in the run but not now: {maps.error}")
        out.labels[i] = maps.gt.label
        out.top1_classes[i] = int(maps.classes[0])
        out.sizes[i] = (maps.height, maps.width)
        out.gt_boxes.append(np.asarray(maps.gt.boxes))
        out.localizable[i] = maps.gt.image_id not in replay.valset.blacklisted
        out.top1_boxes[i], _ = rule.boxes(maps.maps[0], ts, connectivity)
        if int(maps.classes[1]) == int(maps.classes[0]):
            out.gtk_boxes[i] = out.top1_boxes[i]
        else:
            out.gtk_boxes[i], _ = rule.boxes(maps.maps[1], ts, connectivity)
        out.gtk_min[i], out.gtk_max[i] = float(maps.maps[1].min()), float(maps.maps[1].max())
        recorded = records.loc[maps.gt.image_id, "top5_classes"].split()
        out.top1_mismatches += int(bool(recorded) and int(recorded[0]) != out.top1_classes[i])
    return out


def _pct(count: float, total: int) -> float:
    return float("nan") if total == 0 else 100.0 * float(count) / total


def curve_from_boxes(tb: ThresholdBoxes) -> pd.DataFrame:
    """Aggregate :class:`ThresholdBoxes` into the curve frame (columns :data:`CURVE_COLUMNS`)."""
    n, t = len(tb.image_ids), len(tb.thresholds)
    gtk_iou = np.zeros((n, t))
    top1_iou = np.zeros((n, t))
    whole = np.zeros(n)
    for i in range(n):
        gtk_iou[i] = best_iou(tb.gtk_boxes[i], tb.gt_boxes[i])
        top1_iou[i] = best_iou(tb.top1_boxes[i], tb.gt_boxes[i])
        h, w = tb.sizes[i]
        whole[i] = best_iou(np.array([[0, 0, w - 1, h - 1]]), tb.gt_boxes[i])[0]
    loc = tb.localizable
    n_loc = int(loc.sum())
    correct = topk_cls_hit(tb.top1_classes[:, None], tb.labels, 1)
    area = (tb.gtk_boxes[..., 2] - tb.gtk_boxes[..., 0] + 1) * (tb.gtk_boxes[..., 3] - tb.gtk_boxes[..., 1] + 1)
    frac = area / np.maximum(tb.sizes[:, :1] * tb.sizes[:, 1:], 1)
    thr = tb.iou_threshold
    frame = pd.DataFrame(
        {
            "threshold": tb.thresholds,
            "images": n_loc,
            "gt_known_loc_acc": [_pct(is_hit(tb.labels[loc], tb.labels[loc], gtk_iou[loc, j], thr).sum(), n_loc) for j in range(t)],
            "top1_loc_acc": [_pct(is_hit(tb.top1_classes[loc], tb.labels[loc], top1_iou[loc, j], thr).sum(), n_loc) for j in range(t)],
            "mean_gtk_iou": gtk_iou[loc].mean(axis=0) if n_loc else np.full(t, np.nan),
            "mean_gtk_box_frac": frac[loc].mean(axis=0) if n_loc else np.full(t, np.nan),
            "top1_cls_acc": _pct(correct.sum(), n),
            "whole_image_acc": _pct(is_hit(tb.labels[loc], tb.labels[loc], whole[loc], thr).sum(), n_loc),
        },
        columns=CURVE_COLUMNS,
    )
    return frame


def threshold_curve(
    run_dir: Path | str | RunReplay,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    limit: int | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 16,
    workers: int = 0,
) -> pd.DataFrame:
    """Localization accuracy against the CAM threshold for a finished run (see the module docstring).

    Args:
        run_dir: a run folder, or an already opened :class:`~bench.run.replay.RunReplay`.
        thresholds: strictly increasing fractions of each map's max in [0, 1).
        limit: only the run's first ``limit`` decoded images.
        device, batch_size, workers: how the maps are recomputed.

    Returns:
        One row per threshold, columns :data:`CURVE_COLUMNS`; ``attrs``: ``run``, ``model``,
        ``suite``, ``protocol_thresholds``, ``iou_threshold``, ``top1_mismatches``.
    """
    replay = run_dir if isinstance(run_dir, RunReplay) else RunReplay.open(run_dir, device=device)
    tb = threshold_boxes(replay, thresholds, limit, batch_size=batch_size, workers=workers)
    frame = curve_from_boxes(tb)
    frame.attrs.update(
        {
            "run": str(replay.run.path),
            "model": replay.manifest["model"]["name"],
            "suite": replay.protocol.name,
            "protocol_thresholds": list(replay.protocol.thresholds),
            "iou_threshold": tb.iou_threshold,
            "top1_mismatches": tb.top1_mismatches,
        }
    )
    return frame


# ---- plot -----------------------------------------------------------------------------------------
_SERIES: tuple[tuple[str, str, tuple[int, int, int], bool], ...] = (
    # column, legend, colour, dashed
    ("gt_known_loc_acc", "GT-known loc. accuracy", (31, 119, 180), False),
    ("top1_loc_acc", "top-1 loc. accuracy", (214, 39, 40), False),
    ("top1_cls_acc", "top-1 cls. accuracy (ceiling of top-1 loc.)", (148, 103, 189), True),
    ("whole_image_acc", "whole-image box (baseline)", (127, 127, 127), True),
)


def _dashed_line(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], fill: tuple[int, int, int], width: int, dash: float) -> None:
    """A polyline drawn as dashes of ``dash`` px (on, off, on, ...)."""
    on, carry = True, 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        seg = float(np.hypot(x1 - x0, y1 - y0))
        pos = 0.0
        while pos < seg:
            step = min(dash - carry, seg - pos)
            a, b = pos / seg, (pos + step) / seg
            if on:
                draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))], fill=fill, width=width)
            pos += step
            carry += step
            if carry >= dash:
                on, carry = not on, 0.0


def plot_curve(frame: pd.DataFrame, title: str | None = None, *, size: tuple[int, int] = (760, 460)) -> Image.Image:
    """Line plot of a curve frame (accuracy % against threshold), drawn with Pillow at 2x then downsampled.

    A dotted vertical line marks the protocol's threshold(s) from ``frame.attrs`` when present.
    """
    s = 2  # supersampling factor: Pillow lines are not antialiased
    width, height = size[0] * s, size[1] * s
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = get_font(13 * s)
    small = get_font(12 * s)
    left, right, top, bottom = 62 * s, 20 * s, 40 * s, 118 * s
    x0, x1, y0, y1 = left, width - right, top, height - bottom

    def px(t: float) -> float:
        return x0 + (x1 - x0) * t

    def py(v: float) -> float:
        return y1 - (y1 - y0) * v / 100.0

    if title is None:
        attrs = frame.attrs
        n = int(frame["images"].iloc[0]) if len(frame) else 0
        title = f"{attrs.get('model', '')} / {attrs.get('suite', '')}: accuracy (%) vs CAM threshold, {n} images"
    draw.text((x0, 10 * s), title, fill=(0, 0, 0), font=font)
    for k in range(11):  # grid and ticks
        gx, gy = px(k / 10), py(k * 10)
        draw.line([(gx, y0), (gx, y1)], fill=(228, 228, 228), width=s)
        draw.line([(x0, gy), (x1, gy)], fill=(228, 228, 228), width=s)
        label = f"{k / 10:.1f}"
        tw = draw.textlength(label, font=small)
        draw.text((gx - tw / 2, y1 + 6 * s), label, fill=(0, 0, 0), font=small)
        label = f"{k * 10}"
        tw = draw.textlength(label, font=small)
        draw.text((x0 - 8 * s - tw, gy - 7 * s), label, fill=(0, 0, 0), font=small)
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0), width=s)
    xlabel = "CAM threshold t (fraction of the map's max)"
    draw.text(((x0 + x1) / 2 - draw.textlength(xlabel, font=font) / 2, y1 + 24 * s), xlabel, fill=(0, 0, 0), font=font)
    for t in frame.attrs.get("protocol_thresholds", []):
        _dashed_line(draw, [(px(t), y0), (px(t), y1)], (0, 0, 0), s, 3 * s)
        draw.text((px(t) + 4 * s, y0 + 4 * s), f"protocol t={t:.2f}", fill=(0, 0, 0), font=small)
    ts = frame["threshold"].to_numpy(float)
    legend_y = y1 + 48 * s
    for k, (column, name, colour, dashed) in enumerate(_SERIES):
        values = frame[column].to_numpy(float)
        pts = [(px(t), py(v)) for t, v in zip(ts, values) if np.isfinite(v)]
        if len(pts) >= 2:
            if dashed:
                _dashed_line(draw, pts, colour, 2 * s, 8 * s)
            else:
                draw.line(pts, fill=colour, width=3 * s, joint="curve")
                for x, y in pts:
                    draw.ellipse([x - 3 * s, y - 3 * s, x + 3 * s, y + 3 * s], fill=colour)
        lx = x0 + (k % 2) * (x1 - x0) // 2
        ly = legend_y + (k // 2) * 20 * s
        if dashed:
            _dashed_line(draw, [(lx, ly + 8 * s), (lx + 30 * s, ly + 8 * s)], colour, 2 * s, 8 * s)
        else:
            draw.line([(lx, ly + 8 * s), (lx + 30 * s, ly + 8 * s)], fill=colour, width=3 * s)
        draw.text((lx + 38 * s, ly), name, fill=(0, 0, 0), font=small)
    return img.resize(size, Image.Resampling.LANCZOS)


def save_curve(frame: pd.DataFrame, out_dir: Path | str, stem: str = "threshold_curve") -> tuple[Path, Path]:
    """Write ``<stem>.csv`` (6 decimals) and ``<stem>.png`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    csv_path.write_text(frame.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    plot_curve(frame).save(png_path, format="PNG")
    return csv_path, png_path


def best_threshold(frame: pd.DataFrame) -> dict[str, Any]:
    """The curve's best threshold for GT-known accuracy (first maximum) and its value, for reports."""
    if frame.empty or frame["gt_known_loc_acc"].isna().all():
        return {}
    j = int(frame["gt_known_loc_acc"].to_numpy(float).argmax())
    return {"best_threshold": float(frame["threshold"].iloc[j]), "best_gt_known_loc_acc": float(frame["gt_known_loc_acc"].iloc[j])}
