"""wsolevaluation's evaluation as its code computes it (Choe et al., CVPR 2020; clovaai/wsolevaluation).

Every rule below is the reference code's, in its order, so that numbers stand beside published ones
cell for cell (the harness's own sweep, :mod:`bench.core.sweep`, follows the paper's definitions
instead; docs/wsol.md lists and quantifies the differences). Needs OpenCV (the ``wsol`` extra:
``pip install 'wsol-bench[wsol]'``), whose resize and contour code the reference uses.

Per image, with ``cam`` the GT class's map at feature resolution (any ``h x w``):

1. **resize**: ``cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)`` on float32;
2. **normalise**: a map holding a NaN, or constant, becomes zeros; else ``(m - min) / max`` of the
   shifted map, in float32 (``normalize_scoremap``);
3. **quantise**: ``uint8(m * 255)`` (truncation);
4. for each ``tau`` of ``arange(0, 1, step)`` (step 0.001 by default): **binary map**
   ``q > int(tau * max(q))`` (strict, OpenCV ``THRESH_BINARY``);
5. **contours**: ``cv2.findContours(binary, RETR_TREE, CHAIN_APPROX_SIMPLE)`` — outer borders of the
   8-connected components AND the borders of their holes; none -> the single box ``(0, 0, 0, 0)``;
   MaxBoxAcc keeps the contour of largest ``cv2.contourArea`` (the polygon through the border
   pixels' centres; first one on ties), MaxBoxAccV2 keeps all;
6. **boxes**: ``cv2.boundingRect`` ``(x, y, w, h)`` -> ``(x, y, x + w, y + h)``, ``x + w`` clipped to
   223 and ``y + h`` to 223 (one pixel past the contour on the right/bottom);
7. **GT boxes** scaled to 224 by ``int(x * 224 / W)`` (``int(y * 224 / H)``), each coordinate;
8. **hit** at ``(tau, delta)``: the best inclusive (+1) IoU over the kept boxes and the GT boxes is
   ``>= delta / 100``, ``delta in (30, 50, 70)``.

MaxBoxAcc = ``max_tau`` of the percentage of images hit at delta 50 (largest contour);
MaxBoxAccV2 = the mean over delta of ``max_tau`` (all contours).

**PxAP** (OpenImages): the normalised float map (step 2, not quantised) against the GT mask at
224 x 224: every instance mask read as grey levels, resized with ``INTER_NEAREST``, foreground =
any instance ``> 0.5``; ignore = ignore-box ``> 0.5`` minus foreground (no ignore file: none);
histograms of the foreground and background scores with right edges ``thresholds + [1, 2, 3]``
(``np.histogram``), summed over images; ``tp``/``fp`` cumulated from the top,
``PxAP = 100 * sum(precision[1:] * diff(recall))`` over bins where ``tp + fp > 0``.

Speed: the quantised map has at most 256 levels, so ``int(tau * max)`` takes at most 256 values;
contours are computed once per distinct value and shared by all taus mapping to it (the result is
identical to one findContours per tau). With numba (the ``fast`` extra) :func:`image_box_hits`
computes every level's boxes in two compiled union-find passes (:mod:`bench.core.wsol_kernel`) and
traces with OpenCV only the levels whose largest contour the kernel cannot decide; the OpenCV path
(``compiled=False``) is the reference and the fallback, with identical hits (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core import wsol_kernel

__all__ = [
    "RESIZE",
    "DELTAS",
    "DEFAULT_STEP",
    "require_cv2",
    "wsol_thresholds",
    "resize_map",
    "normalize_scoremap",
    "scoremap_boxes",
    "scale_gt_boxes",
    "multiple_iou",
    "image_box_hits",
    "cam_box_hits",
    "gt_mask",
    "gt_mask_arrays",
    "read_mask_image",
    "mask_histograms",
    "BoxAccumulator",
    "MaskAccumulator",
    "pxap_from_histograms",
]

RESIZE = 224
DELTAS: tuple[int, ...] = (30, 50, 70)
DEFAULT_STEP = 0.001


def require_cv2():
    """The ``cv2`` module, or :class:`bench.extras.MissingExtra` (an ImportError) naming the extra."""
    from bench.extras import require_extras

    require_extras({"wsol": "the wsol_* suites (wsolevaluation's OpenCV resize and contours)"})
    import cv2

    return cv2


def wsol_thresholds(step: float = DEFAULT_STEP) -> np.ndarray:
    """``np.arange(0, 1, step)`` (float64), the reference's CAM threshold list."""
    if not 0 < step < 1:
        raise ValueError(f"step must be in (0, 1), got {step}")
    return np.arange(0, 1, step)


def resize_map(cam: np.ndarray, size: int = RESIZE) -> np.ndarray:
    """``cv2.resize(cam, (size, size), INTER_CUBIC)`` of a float32 ``(h, w)`` map."""
    cv2 = require_cv2()
    return cv2.resize(np.ascontiguousarray(cam, dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Reference ``normalize_scoremap``: NaN anywhere or a constant map -> zeros; else
    ``m -= min; m /= max`` (a new array, same dtype)."""
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    m = cam - cam.min()
    m /= m.max()
    return m


def _contour_boxes(contours: Sequence[Sequence[np.ndarray]], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes and largest contour of several binary maps' contours at once (one numpy pass per map
    instead of two OpenCV calls per contour: the same numbers).

    ``contours[j]``: the ``cv2.findContours`` contours of the j-th binary map of a ``shape =
    (height, width)`` score map. Returns ``boxes`` ``(K, 4)`` int64 of all contours in order, each
    ``cv2.boundingRect`` ``(x, y, w, h)`` as ``(x, y, min(x + w, width - 1), min(y + h, height - 1))``;
    ``counts`` (J,) contours per map; ``best`` (J,) the index into ``boxes`` of each map's largest
    contour by ``cv2.contourArea`` (the first of equal maxima, as Python's ``max``), -1 for a map
    without contours. ``boundingRect`` of integer points is ``(min x, min y, max x - min x + 1,
    max y - min y + 1)``; ``contourArea`` is the shoelace formula, whose integer terms float64 sums
    exactly in any order, so areas and their ties are OpenCV's."""
    height, width = shape
    counts = np.array([len(cs) for cs in contours], dtype=np.int64)
    flat = [c for cs in contours for c in cs]
    best = np.full(len(contours), -1, dtype=np.int64)
    if not flat:
        return np.zeros((0, 4), dtype=np.int64), counts, best
    lengths = np.array([len(c) for c in flat], dtype=np.int64)
    pts = np.concatenate(flat).reshape(-1, 2).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    x, y = pts[:, 0], pts[:, 1]
    x0, y0 = np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts)
    x1, y1 = np.maximum.reduceat(x, starts), np.maximum.reduceat(y, starts)
    boxes = np.stack([x0, y0, np.minimum(x1 + 1, width - 1), np.minimum(y1 + 1, height - 1)], axis=1)
    nxt = np.arange(1, len(pts) + 1)
    nxt[starts + lengths - 1] = starts  # each polygon closes on its first point
    area2 = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, starts))  # twice the area, exact integers
    has = np.flatnonzero(counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])[has]
    top = np.maximum.reduceat(area2, first)
    owner = np.repeat(np.arange(len(has)), counts[has])
    index = np.arange(len(area2))
    best[has] = np.minimum.reduceat(np.where(area2 == top[owner], index, len(area2)), first)
    return boxes, counts, best


def scoremap_boxes(scoremap: np.ndarray, thresholds: Sequence[float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes per threshold of a normalised ``[0, 1]`` map: ``(largest, all)``, two lists of
    ``(k, 4)`` int64 arrays (``[[0, 0, 0, 0]]`` where no contour), steps 3-6 of the module doc."""
    cv2 = require_cv2()
    q = (scoremap * 255).astype(np.uint8)
    qmax = q.max()
    levels = [int(tau * qmax) for tau in thresholds]
    distinct = list(dict.fromkeys(levels))  # each binary map is traced once, in first-use order
    traced = [cv2.findContours(cv2.threshold(q, t, 255, cv2.THRESH_BINARY)[1], cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
              for t in distinct]  # fmt: skip  # q > t -> 255, else 0
    boxes, counts, best = _contour_boxes(traced, q.shape)
    ends = np.cumsum(counts)
    none = np.zeros((1, 4), dtype=np.int64)
    per_level: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, t in enumerate(distinct):
        if best[j] < 0:
            per_level[t] = (none, none)
        else:
            per_level[t] = (boxes[best[j] : best[j] + 1], boxes[ends[j] - counts[j] : ends[j]])
    largest = [per_level[t][0] for t in levels]
    every = [per_level[t][1] for t in levels]
    return largest, every


def scale_gt_boxes(boxes: np.ndarray, image_size: tuple[int, int], size: int = RESIZE) -> np.ndarray:
    """GT boxes ``(n, 4)`` of a ``(W, H)`` image at ``size x size``: ``int(x * size / W)`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = (float(v) for v in image_size)
    scale = np.array([size / 1.0, size / 1.0, size / 1.0, size / 1.0])
    out = np.empty_like(b)
    out[:, [0, 2]] = b[:, [0, 2]] * scale[0] / w
    out[:, [1, 3]] = b[:, [1, 3]] * scale[1] / h
    return np.trunc(out).astype(np.int64)


def multiple_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Inclusive (+1) IoU of every box ``(a, 4)`` with every GT box ``(b, 4)`` -> ``(a, b)``;
    integer areas, a non-positive union gives 0 (reference ``calculate_multiple_iou``)."""
    a = np.asarray(boxes, dtype=np.int64)[:, None, :]
    g = np.asarray(gt, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], g[..., 2]) - np.maximum(a[..., 0], g[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], g[..., 3]) - np.maximum(a[..., 1], g[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_g = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    union = area_a + area_g - inter
    bad = union <= 0
    return np.where(bad, 0.0, inter / np.where(bad, 1, union))


def _hits(per_tau: list[np.ndarray], gt: np.ndarray, deltas: Sequence[int]) -> np.ndarray:
    counts = [len(b) for b in per_tau]
    best_per_box = multiple_iou(np.concatenate(per_tau), gt).max(axis=1)
    best = np.maximum.reduceat(best_per_box, np.concatenate([[0], np.cumsum(counts)[:-1]]))
    return np.stack([best >= (d / 100) for d in deltas])


def image_box_hits(
    scoremap: np.ndarray,
    gt_boxes_224: np.ndarray,
    thresholds: Sequence[float],
    deltas: Sequence[int] = DELTAS,
    compiled: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-threshold hits of one normalised 224 map: ``(largest, all)``, each bool ``(len(deltas), T)``.

    With numba installed the compiled kernel (:mod:`bench.core.wsol_kernel`) computes them, OpenCV
    tracing only the levels whose largest contour it cannot decide; the same hits as the OpenCV
    path (``compiled=False``, the reference)."""
    gt = np.asarray(gt_boxes_224, dtype=np.int64).reshape(-1, 4)
    if compiled and wsol_kernel.AVAILABLE and max(np.shape(scoremap)) <= wsol_kernel.MAX_SIDE:
        return _kernel_hits(scoremap, gt, thresholds, deltas)
    largest, every = scoremap_boxes(scoremap, thresholds)
    return _hits(largest, gt, deltas), _hits(every, gt, deltas)


def _kernel_hits(
    scoremap: np.ndarray, gt: np.ndarray, thresholds: Sequence[float], deltas: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`image_box_hits` by the compiled kernel; undecided V1 levels are traced by OpenCV."""
    q = (scoremap * 255).astype(np.uint8)
    # int(tau * max) of every tau: the same float64 products, truncated (all are >= 0)
    levels = (np.asarray(thresholds, dtype=np.float64) * float(q.max())).astype(np.int64)
    v1_box, v1_ok, v2_best, _ = wsol_kernel.level_hits(q, gt, levels, deltas)
    todo = [int(t) for t in np.unique(levels) if not v1_ok[t]]
    if todo:
        cv2 = require_cv2()
        traced = [cv2.findContours(cv2.threshold(q, t, 255, cv2.THRESH_BINARY)[1], cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
                  for t in todo]  # fmt: skip
        boxes, _, best = _contour_boxes(traced, q.shape)
        for t, b in zip(todo, best):  # a traced level has a contour (v1 is decided where there is none)
            v1_box[t] = boxes[b]
    v1_best = multiple_iou(v1_box, gt).max(axis=1)
    return (np.stack([v1_best[levels] >= (d / 100) for d in deltas]),
            np.stack([v2_best[levels] >= (d / 100) for d in deltas]))  # fmt: skip


def cam_box_hits(
    cam: np.ndarray,
    gt_boxes: np.ndarray,
    image_size: tuple[int, int],
    thresholds: Sequence[float],
    deltas: Sequence[int] = DELTAS,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole per-image rule from a GT-class map at feature resolution and the image's GT
    boxes (original pixels, ``image_size = (W, H)``): ``(largest, all)`` hit arrays
    ``(len(deltas), T)``. ``bench run`` and ``bench score`` call this."""
    scoremap = normalize_scoremap(resize_map(cam))
    return image_box_hits(scoremap, scale_gt_boxes(gt_boxes, image_size), thresholds, deltas)


def read_mask_image(path: Path) -> np.ndarray:
    """A mask image's grey levels as float32 (``cv2.imread(..., IMREAD_GRAYSCALE)``, as the reference reads it)."""
    cv2 = require_cv2()
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{path}: cannot read this mask image")
    return np.float32(img)


def gt_mask(masks: Sequence[Path], ignore: Path | None, size: int = RESIZE) -> np.ndarray:
    """The reference ``get_mask``: uint8 ``(size, size)``, 1 = foreground, 255 = ignore, 0 = background."""
    return gt_mask_arrays([read_mask_image(p) for p in masks], None if ignore is None else read_mask_image(ignore), size)


def gt_mask_arrays(masks: Sequence[np.ndarray], ignore: np.ndarray | None, size: int = RESIZE) -> np.ndarray:
    """:func:`gt_mask` of masks held in memory: each instance mask and the ignore mask a 2-D array at
    the image's size (the grey levels of the mask images, any numeric dtype, read as float32);
    each resized with ``INTER_NEAREST`` to ``size x size``, ``> 0.5``."""
    cv2 = require_cv2()
    fg = np.zeros((size, size), dtype=bool)
    for m in masks:
        fg |= cv2.resize(np.float32(m), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5
    ign = np.zeros_like(fg)
    if ignore is not None:
        ign = cv2.resize(np.float32(ignore), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5
    ign &= ~fg
    return fg.astype(np.uint8) + 255 * ign.astype(np.uint8)


def mask_histograms(scoremap: np.ndarray, mask: np.ndarray, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the scores at foreground and at background pixels, bin right edges
    ``thresholds + [1, 2, 3]``: ``(true_hist, false_hist)`` int64."""
    edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
    true_hist, _ = np.histogram(scoremap[mask == 1], bins=edges)
    false_hist, _ = np.histogram(scoremap[mask == 0], bins=edges)
    return true_hist.astype(np.int64), false_hist.astype(np.int64)


def pxap_from_histograms(true_hist: np.ndarray, false_hist: np.ndarray) -> float:
    """PxAP in percent from summed histograms (reference ``MaskEvaluator.compute``).

    Raises ValueError when no pixel is foreground or no pixel is ever predicted."""
    t = np.asarray(true_hist, dtype=np.float64)
    f = np.asarray(false_hist, dtype=np.float64)
    tp = t[::-1].cumsum()
    fn = t.sum() - tp
    fp = f[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise ValueError("PxAP: no foreground pixel in the evaluated masks")
    if ((tp + fp) <= 0).all():
        raise ValueError("PxAP: no pixel is predicted at any threshold")
    nonzero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100)


@dataclass
class BoxAccumulator:
    """Counts of hit images per (delta, tau) for both variants (MaxBoxAcc and MaxBoxAccV2)."""

    thresholds: np.ndarray
    deltas: tuple[int, ...] = DELTAS
    images: int = 0
    largest: np.ndarray = field(init=False)
    every: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.largest = np.zeros((len(self.deltas), len(self.thresholds)), dtype=np.int64)
        self.every = np.zeros_like(self.largest)

    def add(self, largest: np.ndarray, every: np.ndarray) -> None:
        """Add one image's hit arrays (from :func:`cam_box_hits`)."""
        self.largest += largest
        self.every += every
        self.images += 1

    def accuracies(self) -> tuple[np.ndarray, np.ndarray]:
        """BoxAcc in percent, ``(largest, all)`` each ``(len(deltas), T)``."""
        n = max(self.images, 1)
        return self.largest * 100.0 / n, self.every * 100.0 / n

    def results(self) -> dict[str, Any]:
        """The keys of :meth:`bench.core.sweep.SweepAccumulator.results` (``bench sweep``'s
        ``sweep.json``): ``curves`` has ``tau``, ``boxacc_<delta>`` (largest contour) and
        ``boxacc_v2_<delta>`` (all contours); MaxBoxAcc at delta 50, MaxBoxAccV2 the mean over deltas."""
        if self.images == 0:
            raise ValueError("no image was added")
        lg, al = self.accuracies()
        curves = pd.DataFrame({"tau": self.thresholds})
        for i, d in enumerate(self.deltas):
            curves[f"boxacc_{d}"] = lg[i]
        for i, d in enumerate(self.deltas):
            curves[f"boxacc_v2_{d}"] = al[i]
        per_delta = {d: float(al[i].max()) for i, d in enumerate(self.deltas)}
        out: dict[str, Any] = {
            "images": self.images,
            "curves": curves,
            "maxboxacc": None,
            "best_tau": None,
            "maxboxacc_v2": float(np.mean(list(per_delta.values()))),
            "maxboxacc_v2_per_delta": per_delta,
            "best_tau_v2": {d: float(self.thresholds[int(np.argmax(al[i]))]) for i, d in enumerate(self.deltas)},
        }
        if 50 in self.deltas:
            i = self.deltas.index(50)
            out["maxboxacc"] = float(lg[i].max())
            out["best_tau"] = float(self.thresholds[int(np.argmax(lg[i]))])
        return out


@dataclass
class MaskAccumulator:
    """Summed PxAP histograms."""

    thresholds: np.ndarray
    images: int = 0
    true_hist: np.ndarray = field(init=False)
    false_hist: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.true_hist = np.zeros(len(self.thresholds) + 2, dtype=np.int64)
        self.false_hist = np.zeros_like(self.true_hist)

    def add_cam(self, cam: np.ndarray, masks: Sequence[Path], ignore: Path | None) -> None:
        """One image: its GT-class map at feature resolution and its mask files."""
        t, f = mask_histograms(normalize_scoremap(resize_map(cam)), gt_mask(masks, ignore), self.thresholds)
        self.true_hist += t
        self.false_hist += f
        self.images += 1

    def pxap(self) -> float:
        return pxap_from_histograms(self.true_hist, self.false_hist)
