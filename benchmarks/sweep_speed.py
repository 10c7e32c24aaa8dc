"""Threshold sweeps side by side: `bench.core.sweep.sweep_map` vs a per-threshold OpenCV loop.

A script, not a test::

    python benchmarks/sweep_speed.py [--maps 300] [--ref-maps 30] [--repeats 3] [--csv results/benchmarks/sweep_speed.csv]

The reference is written from wsolevaluation's definition (``compute_bboxes_from_scoremaps`` and
``BoxEvaluator.accumulate``, Choe et al. CVPR 2020): the map is quantised to 8 bits, and at each
threshold ``cv2.threshold(.., int(tau * max), 255, THRESH_BINARY)``, ``cv2.findContours(RETR_TREE,
CHAIN_APPROX_SIMPLE)``, ``cv2.boundingRect`` of every contour (``(x, y, x + w, y + h)`` clipped),
the largest contour by ``cv2.contourArea``; then one vectorised IoU of all boxes of all thresholds
against the GT boxes, per map. One ``findContours`` per threshold serves both the largest-contour
(MaxBoxAcc) and the all-contours (MaxBoxAccV2) boxes, which favours the reference (wsolevaluation
runs the two evaluations separately). The harness runs ``sweep_map(m, gt, thresholds,
quantize=True, box_convention='wsol')``: the same 8-bit values, thresholds and box convention
(its default float-map mode is timed too and printed beside).

Maps are CAM-like (14x14 grids of ReLU'd normals, bilinearly upsampled to 224x224, min-max
normalised, as ``box_speed.py``), one GT box each, the same maps for both. Rates are maps per
second of CPU time of this one single-threaded process (``time.process_time``: the machine may be
shared; wall-clock rates are printed too), best of ``--repeats``. Prints the rates and ratios at
1,000 (step 0.001, wsolevaluation's fine grid) and 100 thresholds (step 0.01) and appends one CSV
row per grid. Needs ``opencv-python-headless`` (not a dependency of the harness).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows  # noqa: E402
from box_speed import smooth_cams  # noqa: E402

from bench.core.sweep import normalize_map, sweep_backend, sweep_map  # noqa: E402

DELTAS = (30, 50, 70)


def opencv_sweep(cv2, scoremap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """One map, wsolevaluation-style: per threshold threshold + findContours + boundingRect.

    Returns ``(largest_iou (T,), hit_any (T, D))`` for the largest contour and for any contour.
    """
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    peak = np.max(image)
    largest: list[list[int]] = []
    boxes: list[list[int]] = []
    owner: list[int] = []
    for t, tau in enumerate(thresholds):
        _, binary = cv2.threshold(src=image, thresh=int(tau * peak), maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            largest.append([0, 0, 0, 0])
            boxes.append([0, 0, 0, 0])
            owner.append(t)
            continue
        for i, contour in enumerate([max(contours, key=cv2.contourArea), *contours]):
            x, y, w, h = cv2.boundingRect(contour)
            box = [x, y, min(x + w, width - 1), min(y + h, height - 1)]
            if i == 0:
                largest.append(box)
            else:
                boxes.append(box)
                owner.append(t)
    iou_largest = _iou(np.asarray(largest, dtype=np.float64), gt).max(axis=1)
    iou_all = _iou(np.asarray(boxes, dtype=np.float64), gt).max(axis=1)
    best = np.full(len(thresholds), -1.0)
    np.maximum.at(best, np.asarray(owner), iou_all)
    return iou_largest, best[:, None] >= np.asarray(DELTAS)[None, :] / 100.0


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """wsolevaluation's ``calculate_multiple_iou`` (inclusive boxes, +1): ``(n, m)``."""
    iw = np.maximum(0, np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1)
    ih = np.maximum(0, np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1)
    inter = iw * ih
    area_a = ((a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1))[:, None]
    area_b = ((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1))[None, :]
    return inter / (area_a + area_b - inter)


def timed(fn: Callable[[np.ndarray], object], maps: list[np.ndarray], repeats: int) -> tuple[float, float, list]:
    """Best (CPU seconds, wall seconds) over ``repeats`` passes over ``maps``, and the last outputs."""
    best_cpu = best_wall = float("inf")
    out: list = []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = [fn(m) for m in maps]
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, out


def main() -> int:
    """Parse arguments, time both on the same maps at 1,000 and 100 thresholds, print, append rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=300, help="maps timed for the harness")
    ap.add_argument("--ref-maps", type=int, default=30, help="maps timed for the OpenCV loop (the first of --maps)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, default=Path("results/benchmarks/sweep_speed.csv"))
    ap.add_argument("--no-csv", action="store_true")
    args = ap.parse_args()
    try:
        import cv2
    except ImportError:
        print("benchmarks/sweep_speed.py needs OpenCV: pip install opencv-python-headless", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    import numba

    rng = np.random.default_rng(args.seed)
    s = args.size
    maps = [normalize_map(c).astype(np.float32).astype(np.float64) for c in smooth_cams(args.maps, s, s, "relu_normal", rng)]
    gt = np.array([[s // 8, s // 6, (3 * s) // 4, (5 * s) // 6]])
    ref_maps = maps[: args.ref_maps]
    load = os.getloadavg()[0]
    print(
        f"threshold sweeps of {s}x{s} CAM-like maps, one process, CPU-time rates (cpu_count={os.cpu_count()}, "
        f"load average {load:.1f}); harness backend: {sweep_backend()}"
    )
    rows = []
    for step in (0.001, 0.01):
        thr = np.arange(0, 1, step)
        fast = lambda m: sweep_map(m, gt, thr, DELTAS, quantize=True, box_convention="wsol")  # noqa: E731
        fast(maps[0])  # compile / warm up
        opencv_sweep(cv2, ref_maps[0], gt, thr)
        f_cpu, f_wall, _ = timed(fast, maps, args.repeats)
        plain_cpu, _, _ = timed(lambda m: sweep_map(m, gt, thr, DELTAS), maps, args.repeats)  # float map, inclusive boxes
        r_cpu, r_wall, ref = timed(lambda m: opencv_sweep(cv2, m, gt, thr), ref_maps, args.repeats)
        # Known differences (largest contour by polygon area vs most pixels, hole contours of
        # RETR_TREE; see bench.core.sweep): report agreement, do not assert it.
        mine = [fast(m) for m in ref_maps]
        agree_any = float(np.mean([np.array_equal(a.hit_any, b[1]) for a, b in zip(mine, ref)]))
        agree_largest = float(np.mean([(a.largest_iou >= 0.5) == (b[0] >= 0.5) for a, b in zip(mine, ref)]))
        f_rate, r_rate = len(maps) / f_cpu, len(ref_maps) / r_cpu
        print(
            f"  {thr.size:5d} thresholds: harness {f_rate:8.1f} maps/s (wall {len(maps) / f_wall:7.1f})   "
            f"OpenCV loop {r_rate:7.1f} maps/s (wall {len(ref_maps) / r_wall:6.1f})   ratio x{f_rate / r_rate:.1f}   "
            f"[same hits at delta 30/50/70 on {100 * agree_any:.0f}% of maps; largest-box hit agrees on "
            f"{100 * agree_largest:.1f}% of (map, tau)]; harness on the float map (default): "
            f"{len(maps) / plain_cpu:.1f} maps/s"
        )
        rows.append({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "thresholds": thr.size, "size": s, "maps": len(maps), "ref_maps": len(ref_maps),
            "harness_maps_s": round(f_rate, 1), "opencv_maps_s": round(r_rate, 2), "ratio": round(f_rate / r_rate, 1),
            "harness_wall_maps_s": round(len(maps) / f_wall, 1), "harness_float_maps_s": round(len(maps) / plain_cpu, 1),
            "opencv_wall_maps_s": round(len(ref_maps) / r_wall, 2),
            "hit_agreement": round(agree_any, 3), "backend": sweep_backend(), "load_avg": round(load, 2),
            "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "opencv": cv2.__version__,
        })  # fmt: skip
    if not args.no_csv:
        append_rows(args.csv, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
