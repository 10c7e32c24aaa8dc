"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., CVPR 2020) as metric objects.

Per map, with its GT boxes in original pixels and the image's ``(width, height)``:

* ``rules="wsol"`` (default): wsolevaluation's code exactly (:mod:`bench.core.wsol`: OpenCV bicubic
  resize to 224 x 224, min-max normalisation, uint8, ``int(tau * max)``, all contours of
  ``findContours(RETR_TREE)``, GT boxes scaled by truncation). Thresholds ``np.arange(0, 1, step)``.
  This is what the wsol_* suites write to ``sweep.json``.
* ``rules="harness"``: the harness's own sweep (:mod:`bench.core.sweep`, ``bench sweep``): the map
  upsampled with ``upsample`` (the run's protocol mode, bilinear by default) to 224 x 224 (GT boxes
  scaled as above) or to the original size (``at="original"``), float64 min-max, ``> tau``,
  8-connected components. Thresholds ``np.round(np.arange(0, 1, step), 10)``.

Both variants come from one pass over each map (the largest contour and all contours), so
:class:`MaxBoxAcc` and :class:`MaxBoxAccV2` count the same states and ``compute()`` returns every
key of ``sweep.json``; they differ in the figure they are named after (:attr:`key`). The states are
hit counts per (IoU delta, tau) and the image count, summed across processes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics import Metric

from bench.core import wsol
from bench.core.cam import UPSAMPLE_MODES, upsample_cam
from bench.core.sweep import IOU_DELTAS, SweepAccumulator, scale_boxes, sweep_thresholds
from bench.metrics.inputs import Maps, MetricInputError, as_box_list, as_sizes, count_maps, map_groups

__all__ = ["BoxAccuracy", "MaxBoxAcc", "MaxBoxAccV2", "SWEEP_KEYS", "box_accuracy"]

#: The keys ``compute()`` returns: those of ``sweep.json`` that the box sweep defines.
SWEEP_KEYS: tuple[str, ...] = ("images", "maxboxacc", "best_tau", "maxboxacc_v2", "maxboxacc_v2_per_delta", "best_tau_v2")

_EVAL_SIZE = (224, 224)


class BoxAccuracy(Metric):
    """BoxAcc curves per IoU delta (30, 50, 70) and threshold, for the largest contour and for all
    contours. Use :class:`MaxBoxAcc` or :class:`MaxBoxAccV2`.

    Args:
        step: threshold step (``np.arange(0, 1, step)``); wsolevaluation's default is 0.001 for
            the wsol_* suites, ``bench sweep``'s 0.01.
        rules: ``"wsol"`` (wsolevaluation's code) or ``"harness"`` (the harness's sweep).
        at: ``"224"`` or, with ``rules="harness"``, ``"original"`` (``bench sweep --at``).
        upsample: ``rules="harness"`` only: ``"bilinear"`` or ``"bicubic"`` (the run's protocol).
        **kwargs: :class:`torchmetrics.Metric` options (``process_group``, ``sync_on_compute``...).

    After ``compute()``, :attr:`curves` holds the BoxAcc curves (the columns of ``sweep_curves.csv``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    key = "maxboxacc_v2"

    def __init__(self, step: float = 0.001, rules: str = "wsol", *, at: str = "224", upsample: str = "bilinear", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if rules not in ("wsol", "harness"):
            raise MetricInputError(f"rules must be 'wsol' (wsolevaluation's code) or 'harness' (bench sweep), got {rules!r}")
        if at not in ("224", "original") or (rules == "wsol" and at != "224"):
            raise MetricInputError(f"at must be '224' (or 'original' with rules='harness'), got {at!r}")
        if upsample not in UPSAMPLE_MODES:
            raise MetricInputError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if not 0 < step < 1:
            raise MetricInputError(f"step must be in (0, 1), got {step}")
        self.step, self.rules, self.at, self.upsample = float(step), rules, at, upsample
        self.deltas: tuple[int, ...] = tuple(IOU_DELTAS)
        if rules == "wsol":
            wsol.require_cv2()  # a missing OpenCV is one line now, not in the first update
            self.thresholds = wsol.wsol_thresholds(step)
            self._sweeper = None
        else:
            self.thresholds = np.asarray(sweep_thresholds(step))
            self._sweeper = SweepAccumulator(thresholds=tuple(self.thresholds.tolist()))
        shape = (len(self.deltas), len(self.thresholds))
        self.add_state("largest", default=torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("every", default=torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("images", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.curves: pd.DataFrame | None = None

    def update(self, maps: Maps, boxes: Any, sizes: Any) -> None:
        """Add a batch: the GT class's maps (any size, device, float dtype), the GT boxes of each
        image (``(k_i, 4)`` xyxy inclusive, original pixels) and the images' ``(width, height)``."""
        n = count_maps(maps)
        box_list = as_box_list(boxes, n)
        size_arr = as_sizes(sizes, n)
        largest = np.zeros((len(self.deltas), len(self.thresholds)), dtype=np.int64)
        every = np.zeros_like(largest)
        for idx, group in map_groups(maps):
            for lg, ev in self._group_hits(idx, group, box_list, size_arr):
                largest += lg
                every += ev
        self.largest += torch.from_numpy(largest).to(self.largest.device)
        self.every += torch.from_numpy(every).to(self.every.device)
        self.images += n

    def _group_hits(self, idx: np.ndarray, group: torch.Tensor, boxes: list[np.ndarray], sizes: np.ndarray):
        """``(largest, every)`` bool ``(D, T)`` per map of one shape group, in ``idx`` order."""
        if self.rules == "wsol":
            # float32 as the CAM cache holds them; OpenCV resizes one map at a time (its
            # multi-channel resize is not bit-identical to the per-map one wsolevaluation runs)
            cams = group.detach().to(torch.float32).cpu().numpy()
            for j, i in enumerate(idx):
                w, h = (int(v) for v in sizes[i])
                yield wsol.cam_box_hits(cams[j], boxes[i], (w, h), self.thresholds, self.deltas)
            return
        stack = group.detach().to(torch.float32)[:, None]  # (B, 1, h, w) on the maps' device
        if self.at == "224":
            targets = {_EVAL_SIZE: np.arange(len(idx))}
        else:
            targets = {}
            for j, i in enumerate(idx):
                targets.setdefault((int(sizes[i][1]), int(sizes[i][0])), []).append(j)
        resized: dict[int, np.ndarray] = {}
        for size, js in targets.items():
            js = np.asarray(js)
            up = upsample_cam(stack[js], size, mode=self.upsample)[:, 0].cpu().numpy()
            resized.update({int(j): up[k] for k, j in enumerate(js)})
        for j, i in enumerate(idx):
            w, h = (int(v) for v in sizes[i])
            gt = scale_boxes(boxes[i], (w, h), _EVAL_SIZE) if self.at == "224" else boxes[i]
            _, counts = self._sweeper.count(resized[j], gt)
            yield counts.largest_hit.T, counts.any_hit.T

    def _results(self) -> dict[str, Any]:
        largest = self.largest.cpu().numpy()
        every = self.every.cpu().numpy()
        images = int(self.images)
        if self.rules == "wsol":
            acc = wsol.BoxAccumulator(self.thresholds, self.deltas)
            acc.largest, acc.every, acc.images = largest.copy(), every.copy(), images
            return acc.results()
        sweep = SweepAccumulator(thresholds=tuple(self.thresholds.tolist()), iou_thresholds=self.deltas)
        sweep.add_totals(largest.T, every.T, images)
        return sweep.results()

    def compute(self) -> dict[str, Any]:
        """The keys of ``sweep.json`` the box sweep defines (:data:`SWEEP_KEYS`), in percent;
        ``maxboxacc_v2_per_delta`` and ``best_tau_v2`` by delta (int keys). Sets :attr:`curves`.

        Raises:
            ValueError: no image was added (on any process).
        """
        results = self._results()
        self.curves = results["curves"]
        return {k: results[k] for k in SWEEP_KEYS}


class MaxBoxAcc(BoxAccuracy):
    """MaxBoxAcc: BoxAcc at IoU 50 of the largest contour, maximised over tau (``compute()["maxboxacc"]``).

    Example (two 7 x 7 maps of 224 x 224 images; the first covers its object, the second misses it):

    >>> import torch
    >>> from bench.metrics import MaxBoxAcc
    >>> maps = torch.zeros(2, 7, 7)
    >>> maps[0, 2:5, 2:5] = 1.0
    >>> maps[1, 0:2, 0:2] = 1.0
    >>> metric = MaxBoxAcc(step=0.01)
    >>> metric.update(maps, boxes=[[[64, 64, 159, 159]], [[150, 150, 223, 223]]], sizes=[[224, 224], [224, 224]])
    >>> result = metric.compute()
    >>> result["maxboxacc"], result["images"]
    (50.0, 2)
    """

    key = "maxboxacc"


class MaxBoxAccV2(BoxAccuracy):
    """MaxBoxAccV2: all contours, the mean over IoU 30/50/70 of the best BoxAcc over tau
    (``compute()["maxboxacc_v2"]``).

    >>> import torch
    >>> from bench.metrics import MaxBoxAccV2
    >>> maps = torch.zeros(2, 7, 7)
    >>> maps[0, 2:5, 2:5] = 1.0
    >>> maps[1, 0:2, 0:2] = 1.0
    >>> metric = MaxBoxAccV2(step=0.01)
    >>> metric.update(maps, boxes=[[[64, 64, 159, 159]], [[150, 150, 223, 223]]], sizes=[[224, 224], [224, 224]])
    >>> metric.compute()["maxboxacc_v2_per_delta"]
    {30: 50.0, 50: 50.0, 70: 50.0}
    """

    key = "maxboxacc_v2"


def box_accuracy(maps: Maps, boxes: Any, sizes: Any, *, step: float = 0.001, rules: str = "wsol", at: str = "224", upsample: str = "bilinear") -> dict[str, Any]:
    """The functional twin: ``compute()`` of a fresh :class:`MaxBoxAccV2` fed one batch."""
    metric = MaxBoxAccV2(step=step, rules=rules, at=at, upsample=upsample)
    metric.update(maps, boxes, sizes)
    return metric.compute()
