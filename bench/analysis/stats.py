"""Paired statistics for two runs on the same images: bootstrap CIs and exact McNemar tests.

Conventions: per-image vectors are aligned (same images, same order); a "hit" vector holds
1/True where the image counts as a success for a metric (e.g. localized in the top 1), so an
*error* metric's vector is ``1 - hit``. Differences are **B minus A**, in percent points, like
:func:`bench.report.tables.compare_runs`.

* :func:`paired_bootstrap`: resample images with replacement (the same resampled images for A
  and B -- the pairing), ``n`` times, with a seeded :class:`numpy.random.Generator`; the CI is the
  percentile interval (``np.percentile``, linear interpolation) of the resampled differences.
* :func:`mcnemar_exact`: the discordant pairs ``b01`` (A miss, B hit) and ``b10`` (A hit, B
  miss); under H0 each discordant image is B's win with probability 1/2, so the two-sided exact
  p-value is ``scipy.stats.binomtest(b01, b01 + b10, 0.5).pvalue``
  (``= min(1, 2 * P(X <= min(b01, b10)))``); 1.0 when there is no discordant pair.
* :func:`paired_comparison`: both, for every per-image metric of two runs' records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from bench.core.metrics import ERROR_METRICS
from bench.core.scoring import topk_cls_hit, topk_hit
from bench.run.results import records_to_arrays

__all__ = ["paired_bootstrap", "mcnemar_exact", "per_image_hits", "paired_comparison", "PAIRED_METRICS"]

#: Per-image error metrics :func:`paired_comparison` reports (the summary's names).
PAIRED_METRICS: tuple[str, ...] = ERROR_METRICS

#: Largest number of resampled indices drawn at once (memory bound of the vectorised bootstrap).
_CHUNK_CELLS = 4_000_000


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("paired vectors are empty")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("paired vectors hold NaN or inf")
    return a, b


def paired_bootstrap(
    a_hits: Any, b_hits: Any, n: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Paired bootstrap CI of ``100 * (mean(b) - mean(a))``.

    Args:
        a_hits, b_hits: per-image values of runs A and B on the same images (0/1 hits, or any
            per-image number such as an IoU).
        n: resamples (default 2,000).
        seed: seed of :func:`numpy.random.default_rng`; same inputs and seed, same interval.
        level: coverage of the percentile interval.

    Returns:
        ``(delta, lo, hi)`` in percent points: the observed difference and the interval.
    """
    a, b = _pair(a_hits, b_hits)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diff = b - a
    m = diff.size
    rng = np.random.default_rng(seed)
    deltas = np.empty(n)
    chunk = max(1, _CHUNK_CELLS // m)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        idx = rng.integers(0, m, size=(stop - start, m))
        deltas[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(deltas, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return 100.0 * float(diff.mean()), 100.0 * float(lo), 100.0 * float(hi)


def mcnemar_exact(a_hits: Any, b_hits: Any) -> tuple[int, int, float]:
    """Exact (binomial) two-sided McNemar test on paired 0/1 hits.

    Returns:
        ``(b01, b10, p_value)``: images A misses and B hits, images A hits and B misses, and the
        two-sided exact p-value (1.0 without discordant pairs).
    """
    a, b = _pair(a_hits, b_hits)
    if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        raise ValueError("McNemar needs 0/1 hit vectors")
    b01 = int(((a == 0) & (b == 1)).sum())
    b10 = int(((a == 1) & (b == 0)).sum())
    if b01 + b10 == 0:
        return b01, b10, 1.0
    return b01, b10, float(binomtest(b01, b01 + b10, 0.5, alternative="two-sided").pvalue)


def per_image_hits(records: pd.DataFrame) -> pd.DataFrame:
    """Per-image success indicators of every :data:`PAIRED_METRICS` entry, indexed by image id.

    A metric's success is the complement of its error: classification over scored images,
    localization over scored, non-blacklisted images (NaN elsewhere, i.e. outside the metric's
    denominator, exactly as :func:`bench.core.metrics.summarize` counts).
    """
    arr = records_to_arrays(records)
    ok, loc = arr["ok"], arr["ok"] & ~arr["blacklisted"]
    guessed = arr["guess_classes"].shape[1] > 0  # False: GT-class maps only, no top-k metrics
    out = pd.DataFrame(index=pd.Index(records["image_id"].to_numpy(), name="image_id"))

    def col(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask, values.astype(np.float64), np.nan)

    out["top1_cls_err"] = col(topk_cls_hit(arr["guess_classes"], arr["labels"], 1), ok & guessed)
    out["top5_cls_err"] = col(topk_cls_hit(arr["guess_classes"], arr["labels"], 5), ok & guessed)
    out["top1_loc_err"] = col(topk_hit(arr["guess_hits"], 1), loc & guessed)
    out["top5_loc_err"] = col(topk_hit(arr["guess_hits"], 5), loc & guessed)
    out["gt_known_loc_err"] = col(arr["gtk_hit"], loc)
    return out


def paired_comparison(
    records_a: pd.DataFrame,
    records_b: pd.DataFrame,
    metrics: Sequence[str] = PAIRED_METRICS,
    n: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Error differences B - A with paired bootstrap CIs and McNemar p-values, per metric.

    Images are paired by ``image_id``; a metric uses the images in both runs' denominators.
    Localization metrics of a run without boxes (fc head: no ``guess_boxes``) are skipped.

    Returns:
        One row per metric: ``metric``, ``images``, ``a``, ``b`` (errors, percent),
        ``delta`` (B - A, percent points), ``ci_lo``, ``ci_hi``, ``b01``, ``b10``, ``p_value``.
        ``b01`` counts images A got wrong and B right.
    """
    ha, hb = per_image_hits(records_a), per_image_hits(records_b)
    common = ha.index.intersection(hb.index)
    if common.empty:
        raise ValueError("the two runs share no image id")
    rows = []
    for metric in metrics:
        box = "gtk_box" if metric == "gt_known_loc_err" else "guess_boxes"  # GT-class-only runs have GT-known boxes
        if metric.endswith("loc_err") and not ((records_a[box] != "").any() and (records_b[box] != "").any()):
            continue
        va, vb = ha.loc[common, metric].to_numpy(), hb.loc[common, metric].to_numpy()
        both = np.isfinite(va) & np.isfinite(vb)
        if not both.any():
            continue
        a_hit, b_hit = va[both], vb[both]
        # Errors are misses: the error difference is minus the hit difference.
        d, lo, hi = paired_bootstrap(1.0 - a_hit, 1.0 - b_hit, n=n, seed=seed)
        b01, b10, p = mcnemar_exact(a_hit, b_hit)
        rows.append(
            {
                "metric": metric, "images": int(both.sum()),
                "a": 100.0 * float(1.0 - a_hit.mean()), "b": 100.0 * float(1.0 - b_hit.mean()),
                "delta": d, "ci_lo": lo, "ci_hi": hi, "b01": b01, "b10": b10, "p_value": p,
            }
        )  # fmt: skip
    columns = ["metric", "images", "a", "b", "delta", "ci_lo", "ci_hi", "b01", "b10", "p_value"]
    return pd.DataFrame(rows, columns=columns)
