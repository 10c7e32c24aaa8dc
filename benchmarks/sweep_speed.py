"""Speed of the single-pass threshold sweep vs one labelling per threshold, in one run.

A script, not a test::

    python benchmarks/sweep_speed.py [--maps 20] [--size 224] [--step 0.001] [--seed 0]

Maps are smooth CAM-like maps (a 14x14 grid of random values bilinearly upsampled, as in
``box_speed.py``), min-max normalised, evaluated at ``size x size`` with one GT box. Both
methods run on the same maps and thresholds (``np.arange(0, 1, step)``; 1,000 thresholds at
the default 0.001 step), their results are checked equal, and maps/s of each is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from box_speed import smooth_cams  # noqa: E402

from bench.core.sweep import normalize_map, reference_sweep_map, sweep_map  # noqa: E402


def _time(fn, maps: list[np.ndarray]) -> tuple[float, list]:  # noqa: ANN001
    t0 = time.perf_counter()
    out = [fn(m) for m in maps]
    return time.perf_counter() - t0, out


def main() -> None:
    """Parse arguments, time both methods on the same maps, print maps/s."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=20)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--step", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    thresholds = np.arange(0, 1, args.step)
    s = args.size
    gt = np.array([[s // 8, s // 6, (3 * s) // 4, (5 * s) // 6]])
    print(
        f"threshold sweep, {args.maps} maps of {s}x{s}, {thresholds.size} thresholds (step {args.step}), "
        f"1 process (cpu_count={os.cpu_count()})"
    )
    for dist in ("relu_normal", "normal"):
        maps = [normalize_map(c) for c in smooth_cams(args.maps, s, s, dist, rng)]
        sweep_map(maps[0], gt, thresholds)  # warm-up
        t_fast, fast = _time(lambda m: sweep_map(m, gt, thresholds), maps)
        t_ref, ref = _time(lambda m: reference_sweep_map(m, gt, thresholds), maps)
        for a, b in zip(fast, ref):
            assert np.array_equal(a.largest_box, b.largest_box) and np.array_equal(a.hit_any, b.hit_any)
        print(
            f"  {dist:12s} single-pass {args.maps / t_fast:8.2f} maps/s   "
            f"per-threshold ndimage.label {args.maps / t_ref:8.2f} maps/s   "
            f"speed-up x{t_ref / t_fast:.1f}   (results identical)"
        )


if __name__ == "__main__":
    main()
