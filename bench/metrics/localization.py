"""The devkit metrics of a top-k suite (CAM paper; ILSVRC devkit) as a metric object.

Every image goes through the harness's one outcome path, :func:`bench.core.scoring.image_record`
(the suite's upsampling, box rule, guesses and IoU threshold), and the summary is
:func:`bench.core.metrics.summarize` plus :func:`bench.core.metrics.breakdowns` of the records, read
as ``records.csv.gz`` reads back (:func:`bench.core.records.records_frame`): the same code and the
same numbers as a run folder's ``records.csv.gz`` and ``summary.json``.

States: one float64 row per image (its order key and the per-image fields ``summarize`` needs),
concatenated across processes and sorted by the order key before the summary, so that two processes
give the same summary as one. The order key is the dataset index when ``update`` is given
``indices``; else ``n * world_size + rank`` for the ``n``-th image a process adds, which is the
dataset order of a :class:`torch.utils.data.DistributedSampler` without shuffling (its padding
repeats images at the end: pass ``indices``, or evaluate without padding, to count each once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from bench.core.cam import upsample_cam
from bench.core.metrics import breakdowns, summarize
from bench.core.protocol import Protocol, load_protocol
from bench.core.records import records_frame, records_to_arrays
from bench.core.scoring import image_record
from bench.metrics.inputs import Maps, MetricInputError, as_box_list, as_int_vector, as_sizes, count_maps

__all__ = ["LocalizationError", "localization_error", "SUMMARY_ARRAYS"]

#: Guess slots kept per image (the top-5 metrics read at most five).
_GUESSES = 5
#: Row layout of the per-image state: order key, then summarize's arrays.
SUMMARY_ARRAYS: tuple[str, ...] = (
    "key", "labels", "ok", "blacklisted", *(f"guess_class_{i}" for i in range(_GUESSES)),
    *(f"guess_hit_{i}" for i in range(_GUESSES)), "gtk_iou", "gtk_hit", "degenerate", "gt_area_frac",
)  # fmt: skip
_WIDTH = len(SUMMARY_ARRAYS)
#: Floats resized in one interpolate call at most (a size group is cut in chunks of this size).
_RESIZE_BUDGET = 1 << 25


@dataclass(frozen=True)
class _GT:
    """What :func:`image_record` reads of an image's ground truth."""

    image_id: str
    label: int
    boxes: np.ndarray


def _dist() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class LocalizationError(Metric):
    """Top-1/top-5 classification and localization errors, GT-known error and IoU statistics of a
    suite (the keys of ``summary.json`` that the records define).

    Args:
        suite: a suite name, a ``.toml`` path or a resolved :class:`~bench.core.protocol.Protocol`
            (``ilsvrc_loc``: top-5 guesses of ``largest_cc`` boxes at 0.20, IoU >= 0.5).
        class_ids: class id per label index, for the ``by_class`` breakdown's keys (default: the
            label as text).
        localized: False for a classification-only model (every localization key None).
        keep_records: keep this process's per-image records (:attr:`records`).
        **kwargs: :class:`torchmetrics.Metric` options.

    ``update(maps, labels, boxes, sizes, classes=None, scores=None)``:

    * ranked maps: ``maps`` ``(N, k, h, w)`` (or N arrays ``(k, h, w)``), ``classes`` ``(N, k)``
      class indices in rank order, ``scores`` ``(N, k)`` optional. The first five entries are the
      guesses (the suite needs the first ``protocol.ranks_needed``); the GT-known box comes from
      the first entry of the GT class (append the GT class's map when it is not ranked);
    * GT-class maps: ``maps`` ``(N, h, w)``, ``classes`` None: only the GT-known error and the IoU
      statistics are defined (top-k keys None);
    * ``labels`` ``(N,)`` GT class indices, ``boxes`` N arrays ``(k_i, 4)`` xyxy inclusive in
      original pixels, ``sizes`` ``(N, 2)`` as ``(width, height)``; keyword ``image_ids``,
      ``blacklisted`` (bool per image) and ``indices`` (dataset index per image: the order key).

    Maps are resized to each image's size with the suite's ``upsample`` on their own device, one
    call per group of equal map shape and image size; the boxes are then found on the CPU.

    >>> import torch
    >>> from bench.metrics import LocalizationError
    >>> metric = LocalizationError("ilsvrc_loc")
    >>> maps = torch.zeros(1, 6, 7, 7)
    >>> maps[0, :, 2:5, 2:5] = 1.0            # every class's map: the image's centre
    >>> classes = torch.tensor([[3, 1, 4, 0, 2, 5]])
    >>> metric.update(maps, labels=[3], boxes=[[[64, 64, 159, 159]]], sizes=[[224, 224]], classes=classes)
    >>> summary = metric.compute()
    >>> summary["top1_loc_err"], summary["gt_known_loc_err"], summary["images"]
    (0.0, 0.0, 1)
    >>> metric.records.loc[0, "guess_classes"]
    '3 1 4 0 2'
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        suite: str | Protocol = "ilsvrc_loc",
        *,
        class_ids: Any = None,
        localized: bool = True,
        keep_records: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.protocol = suite if isinstance(suite, Protocol) else load_protocol(suite)
        self.class_ids = None if class_ids is None else tuple(str(c) for c in class_ids)
        self.localized = bool(localized)
        self.keep_records = bool(keep_records)
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self._frames: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []
        self._seen = 0

    # ------------------------------------------------------------------ feeding
    def update_records(self, records: Any, indices: Any = None) -> None:
        """Add already-scored images: records as :func:`bench.core.scoring.image_record` /
        ``failed_record`` make them (dicts), or a frame as ``records.csv.gz`` reads back.
        ``indices``: the images' dataset indices (the order key; default: the order they come in)."""
        frame = records_frame(records)
        n = len(frame)
        self._computed = None  # torchmetrics' cached compute() is stale (update() does the same)
        self._update_count += 1
        if n == 0:
            return
        keys = self._order_keys(n, indices)
        arrays = records_to_arrays(frame, _GUESSES)
        rows = np.zeros((n, _WIDTH), dtype=np.float64)
        rows[:, 0] = keys
        rows[:, 1] = arrays["labels"]
        rows[:, 2] = arrays["ok"]
        rows[:, 3] = arrays["blacklisted"]
        g = arrays["guess_classes"].shape[1]
        rows[:, 4 : 4 + _GUESSES] = -1
        rows[:, 4 : 4 + g] = arrays["guess_classes"]
        rows[:, 4 + _GUESSES : 4 + _GUESSES + g] = arrays["guess_hits"]
        rows[:, -4] = arrays["gtk_iou"]
        rows[:, -3] = arrays["gtk_hit"]
        rows[:, -2] = arrays["degenerate"]
        rows[:, -1] = arrays["gt_area_frac"]
        self.rows.append(torch.from_numpy(rows.reshape(-1)).to(self.device))
        if self.keep_records:
            self._frames.append(frame.reset_index(drop=True))
            self._keys.append(keys)

    def update(
        self,
        maps: Maps,
        labels: Any,
        boxes: Any,
        sizes: Any,
        classes: Any = None,
        scores: Any = None,
        *,
        image_ids: Any = None,
        blacklisted: Any = None,
        indices: Any = None,
    ) -> None:
        """Score a batch of maps (see the class docstring) and add their records."""
        self.update_records(self._score(maps, labels, boxes, sizes, classes, scores, image_ids=image_ids, blacklisted=blacklisted), indices)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``update()`` with the batch, and the summary of this batch alone (the torchmetrics
        convention; each image is scored once)."""
        indices = kwargs.pop("indices", None)
        records = self._score(*args, **kwargs)
        self.update_records(records, indices)
        batch = LocalizationError(self.protocol, class_ids=self.class_ids, localized=self.localized, keep_records=False, sync_on_compute=False)
        batch.update_records(records)
        return batch.compute()

    def sync(self, *args: Any, **kwargs: Any) -> None:
        """torchmetrics' sync, with an empty float64 row block on a process that added no image (so
        that every process sends float64 rows whatever the metric's device and dtype)."""
        if isinstance(self.rows, list) and not self.rows:
            self.rows.append(torch.zeros(0, dtype=torch.float64, device=self.device))
        super().sync(*args, **kwargs)

    def _score(
        self, maps: Maps, labels: Any, boxes: Any, sizes: Any, classes: Any = None, scores: Any = None, *,
        image_ids: Any = None, blacklisted: Any = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The batch's records (:func:`bench.core.scoring.image_record`), not added."""
        n = count_maps(maps)
        label_arr = as_int_vector(labels, n, "labels")
        box_list = as_box_list(boxes, n)
        size_arr = as_sizes(sizes, n)
        ids = [str(self._seen + i) for i in range(n)] if image_ids is None else [str(x) for x in image_ids]
        if len(ids) != n:
            raise MetricInputError(f"{len(ids)} image_ids for {n} maps")
        black = np.zeros(n, dtype=bool) if blacklisted is None else np.asarray(blacklisted, dtype=bool).reshape(-1)
        if black.shape[0] != n:
            raise MetricInputError(f"{black.shape[0]} blacklisted flags for {n} maps")
        ranked = classes is not None
        class_arr = score_arr = None
        if ranked:
            class_arr = _as_matrix(classes, n, "classes", np.int64)
            score_arr = None if scores is None else _as_matrix(scores, n, "scores", np.float64)
            if class_arr.shape[1] < self.protocol.ranks_needed:
                raise MetricInputError(f"{class_arr.shape[1]} ranked classes per image; the suite {self.protocol.name} needs at least {self.protocol.ranks_needed}")
        resized = self._resize(maps, size_arr, ranked, class_arr)
        records = []
        for i in range(n):
            gt = _GT(ids[i], int(label_arr[i]), box_list[i])
            size = (int(size_arr[i][1]), int(size_arr[i][0]))
            try:
                if not ranked:
                    record = image_record(self.protocol, gt, bool(black[i]), size, None, None, resized[i], [gt.label])
                else:
                    k = class_arr[i]
                    record = image_record(self.protocol, gt, bool(black[i]), size, k[:_GUESSES],
                                          None if score_arr is None else score_arr[i][:_GUESSES], resized[i], k)  # fmt: skip
            except ValueError as exc:
                raise MetricInputError(f"image {ids[i]}: {exc}") from None
            records.append(record)
        return records

    def _resize(self, maps: Maps, sizes: np.ndarray, ranked: bool, classes: np.ndarray | None) -> list[Any]:
        """Each image's maps ``(m, H, W)`` at its size: one interpolate per (map shape, image size)
        group, as :func:`bench.core.maps.resize_maps` resizes one image (float32 out; maps already
        at the image's size are kept as they are)."""
        if isinstance(maps, (torch.Tensor, np.ndarray)):
            t = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(maps))
            items = list(t) if t.ndim == (4 if ranked else 3) else None
            if items is None:
                want = "(N, k, h, w) with classes" if ranked else "(N, h, w) without classes"
                raise MetricInputError(f"maps must be {want}, got shape {tuple(t.shape)}")
        else:
            items = [m if isinstance(m, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(m))) for m in maps]
        n = len(items)
        out: list[Any] = [None] * n
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, m in enumerate(items):
            m = m if ranked else m[None]
            if m.ndim != 3 or 0 in m.shape:
                raise MetricInputError(f"maps[{i}] must be {'(k, h, w)' if ranked else '(h, w)'}, got shape {tuple(items[i].shape)}")
            if ranked and m.shape[0] != classes.shape[1]:
                raise MetricInputError(f"maps[{i}] holds {m.shape[0]} maps for {classes.shape[1]} classes")
            if m.is_floating_point() and not bool(torch.isfinite(m).all()):  # on the maps' device
                raise MetricInputError(f"maps[{i}] has {int((~torch.isfinite(m)).sum())} non-finite values (NaN/inf)")
            items[i] = m
            size = (int(sizes[i][1]), int(sizes[i][0]))
            if tuple(m.shape[-2:]) == size:  # as resize_maps: already at the image's size
                out[i] = m.detach().cpu().numpy()
                continue
            groups.setdefault((str(m.device), m.dtype, tuple(m.shape), size), []).append(i)
        for (_, _, shape, size), idx in groups.items():
            per = max(1, _RESIZE_BUDGET // max(1, shape[0] * size[0] * size[1]))
            for start in range(0, len(idx), per):
                chunk = idx[start : start + per]
                stack = torch.stack([items[i] for i in chunk])
                if stack.dtype not in (torch.float32, torch.float64):
                    stack = stack.float()
                up = upsample_cam(stack, size, mode=self.protocol.upsample).float().cpu().numpy()
                for j, i in enumerate(chunk):
                    out[i] = up[j]
        return out

    def _order_keys(self, n: int, indices: Any) -> np.ndarray:
        if indices is not None:
            keys = as_int_vector(indices, n, "indices").astype(np.float64)
        else:
            rank, world = _dist()
            keys = (np.arange(self._seen, self._seen + n, dtype=np.float64) * world) + rank
        self._seen += n
        return keys

    # ------------------------------------------------------------------ results
    def compute(self) -> dict[str, Any]:
        """``summarize`` of every image added (all processes), then ``by_size`` and ``by_class``:
        the keys and values of ``summary.json`` after the run's identity (suite, model, protocol hash,
        data fingerprint)."""
        arrays = self.summary_arrays()
        summary = summarize(**{k: v for k, v in arrays.items() if k != "gt_area_frac"}, localized=self.localized)
        summary.update(breakdowns(arrays, self.class_ids, localized=self.localized))
        return summary

    def summary_arrays(self) -> dict[str, np.ndarray]:
        """The per-image arrays of :func:`bench.core.metrics.summarize` (plus ``gt_area_frac``) of
        the states as they are (after ``compute()``'s sync: of every process), in order-key order."""
        rows = self.rows
        flat = dim_zero_cat(rows) if isinstance(rows, list) and rows else rows
        if isinstance(flat, list) or flat.numel() == 0:
            table = np.zeros((0, _WIDTH), dtype=np.float64)
        else:
            table = flat.detach().cpu().to(torch.float64).numpy().reshape(-1, _WIDTH)
        table = table[np.argsort(table[:, 0], kind="stable")]
        gc = table[:, 4 : 4 + _GUESSES].astype(np.int64)
        g = int((gc != -1).sum(axis=1).max()) if len(gc) else 0
        return {
            "labels": table[:, 1].astype(np.int64),
            "ok": table[:, 2] == 1,
            "blacklisted": table[:, 3] == 1,
            "guess_classes": gc[:, :g],
            "guess_hits": table[:, 4 + _GUESSES : 4 + _GUESSES + g] == 1,
            "gtk_iou": table[:, -4],
            "gtk_hit": table[:, -3] == 1,
            "degenerate": table[:, -2] == 1,
            "gt_area_frac": table[:, -1],
        }

    @property
    def records(self) -> pd.DataFrame:
        """This process's per-image records (``keep_records=True``) in order-key order (the order they
        were added, or dataset order with ``indices``): the rows and columns of ``records.csv.gz`` as
        :func:`bench.run.results.read_records` reads it."""
        if not self._frames:
            return records_frame([])
        frame = pd.concat(self._frames, ignore_index=True)
        return frame.iloc[np.argsort(np.concatenate(self._keys), kind="stable")].reset_index(drop=True)

    def gathered_records(self) -> pd.DataFrame:
        """Every process's records in order-key order (a collective call under
        ``torch.distributed``: every process must call it); this process's alone without a group."""
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0)
        mine = (np.sort(keys, kind="stable"), self.records)
        rank, world = _dist()
        parts = [mine]
        if world > 1:
            parts = [None] * world
            torch.distributed.all_gather_object(parts, mine)
        all_keys = np.concatenate([p[0] for p in parts])
        frame = pd.concat([p[1] for p in parts], ignore_index=True)
        return frame.iloc[np.argsort(all_keys, kind="stable")].reset_index(drop=True)

    def reset(self) -> None:
        """Clear the states, the kept records and the order counter."""
        super().reset()
        self._frames = []
        self._keys = []
        self._seen = 0


def _as_matrix(values: Any, n: int, what: str, dtype: Any) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise MetricInputError(f"{what} must be (N={n}, k), got shape {arr.shape}")
    if dtype is np.int64 and arr.dtype.kind not in "iu":
        raise MetricInputError(f"{what} must hold class indices (integers), got dtype {arr.dtype}")
    return arr.astype(dtype)


def localization_error(
    maps: Maps, labels: Any, boxes: Any, sizes: Any, classes: Any = None, scores: Any = None, *, suite: str | Protocol = "ilsvrc_loc"
) -> dict[str, Any]:
    """The functional twin: ``compute()`` of a fresh :class:`LocalizationError` fed one batch."""
    metric = LocalizationError(suite, keep_records=False)
    metric.update(maps, labels, boxes, sizes, classes, scores)
    return metric.compute()
