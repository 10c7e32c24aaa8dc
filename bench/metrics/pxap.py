"""PxAP (Choe et al., CVPR 2020; OpenImages30k) as a metric object: wsolevaluation's
``MaskEvaluator`` exactly (:mod:`bench.core.wsol`).

Per map: OpenCV bicubic resize to 224 x 224, min-max normalisation (float, not quantised); the GT
mask at 224 x 224 from the image's instance masks (each resized nearest-neighbour, foreground where
any is ``> 0.5``) and its ignore mask (``> 0.5``, minus the foreground); histograms of the scores
over foreground and background pixels with right edges ``thresholds + [1, 2, 3]``. The states are
the two histograms and the image count, summed across processes; PxAP comes from the summed
histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from bench.core import wsol
from bench.metrics.inputs import Maps, MetricInputError, count_maps, map_groups

__all__ = ["PxAP", "pixel_average_precision"]


def _mask_list(item: Any, what: str) -> list[np.ndarray]:
    """One image's instance masks: a 2-D mask, a ``(k, H, W)`` stack, or a sequence of 2-D masks."""
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    if isinstance(item, np.ndarray):
        if item.ndim == 2:
            return [item]
        if item.ndim == 3:
            return list(item)
        raise MetricInputError(f"{what} must be a 2-D mask or a (k, H, W) stack of instance masks, got shape {item.shape}")
    out = []
    for m in item:
        out.extend(_mask_list(m, what))
    if not out:
        raise MetricInputError(f"{what} holds no mask")
    return out


class PxAP(Metric):
    """Pixel average precision of the GT class's maps against GT masks (percent).

    Args:
        step: threshold step (``np.arange(0, 1, step)``; 0.001 in wsolevaluation).

    ``update(maps, masks, ignore=None)``: ``maps`` as for :class:`bench.metrics.MaxBoxAcc`;
    ``masks`` one entry per map: a 2-D mask at the image's size (grey levels or 0/1, foreground
    ``> 0.5``), a ``(k, H, W)`` stack or a list of instance masks; ``ignore`` None or one entry per
    map (a 2-D mask, or None for none). ``compute()`` -> ``{"pxap", "pxap_images"}`` (``pxap``
    None before any image).

    >>> import torch
    >>> from bench.metrics import PxAP
    >>> maps = torch.zeros(1, 4, 4)
    >>> maps[0, :2, :2] = 1.0
    >>> mask = torch.zeros(8, 8)
    >>> mask[:4, :4] = 1
    >>> metric = PxAP(step=0.01)
    >>> metric.update(maps, [mask])
    >>> metric.compute()["pxap_images"]
    1
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, step: float = 0.001, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < step < 1:
            raise MetricInputError(f"step must be in (0, 1), got {step}")
        wsol.require_cv2()
        self.step = float(step)
        self.thresholds = wsol.wsol_thresholds(step)
        bins = len(self.thresholds) + 2
        self.add_state("true_hist", default=torch.zeros(bins, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("false_hist", default=torch.zeros(bins, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("images", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, maps: Maps, masks: Sequence[Any], ignore: Sequence[Any] | None = None) -> None:
        """Add a batch of maps with their GT masks (and ignore masks)."""
        n = count_maps(maps)
        if len(masks) != n:
            raise MetricInputError(f"{len(masks)} masks for {n} maps; give one entry (mask or instance masks) per map")
        if ignore is not None and len(ignore) != n:
            raise MetricInputError(f"{len(ignore)} ignore masks for {n} maps; give one entry (or None) per map")
        true_hist = np.zeros(self.true_hist.shape[0], dtype=np.int64)
        false_hist = np.zeros_like(true_hist)
        for idx, group in map_groups(maps):
            cams = group.detach().to(torch.float32).cpu().numpy()
            for j, i in enumerate(idx):
                ign = None if ignore is None or ignore[i] is None else _mask_list(ignore[i], f"ignore[{i}]")
                if ign is not None and len(ign) != 1:
                    raise MetricInputError(f"ignore[{i}] must be one 2-D mask")
                gt = wsol.gt_mask_arrays(_mask_list(masks[i], f"masks[{i}]"), None if ign is None else ign[0])
                t, f = wsol.mask_histograms(wsol.normalize_scoremap(wsol.resize_map(cams[j])), gt, self.thresholds)
                true_hist += t
                false_hist += f
        self.true_hist += torch.from_numpy(true_hist).to(self.true_hist.device)
        self.false_hist += torch.from_numpy(false_hist).to(self.false_hist.device)
        self.images += n

    def compute(self) -> dict[str, Any]:
        """``pxap`` (percent; None without images) and ``pxap_images``.

        Raises:
            ValueError: images were added but no pixel is foreground (PxAP undefined).
        """
        images = int(self.images)
        if images == 0:
            return {"pxap": None, "pxap_images": 0}
        return {"pxap": wsol.pxap_from_histograms(self.true_hist.cpu().numpy(), self.false_hist.cpu().numpy()), "pxap_images": images}


def pixel_average_precision(maps: Maps, masks: Sequence[Any], ignore: Sequence[Any] | None = None, *, step: float = 0.001) -> dict[str, Any]:
    """The functional twin: ``compute()`` of a fresh :class:`PxAP` fed one batch."""
    metric = PxAP(step=step)
    metric.update(maps, masks, ignore)
    return metric.compute()
