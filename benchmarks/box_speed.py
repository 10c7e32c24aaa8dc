"""Measure the speed of the ``largest_cc`` box rule on smooth 500x375 CAMs.

A script, not a test::

    python benchmarks/box_speed.py [--maps 400] [--width 500] [--height 375] [--seed 0]

Each map is a 14x14 grid of random values bilinearly upsampled (``align_corners=False``, the
same sampling as ``torch.nn.functional.interpolate``) to ``H x W``, like a real CAM upsampled to
the original image size. Prints maps/s (one map at one threshold = one box) for a few value
distributions and the protocol thresholds, single process, single thread.
"""

from __future__ import annotations

import argparse
import os
import time

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from bench.core.boxes import boxes_for_maps  # noqa: E402
from scipy import ndimage  # noqa: E402


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` interpolation matrix of 1-D bilinear resizing, ``align_corners=False``."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(m, (np.arange(n_out), i1), w1)
    return m


def smooth_cams(n: int, height: int, width: int, dist: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` float32 maps ``(height, width)`` upsampled from 14x14 random grids."""
    if dist == "uniform":
        low = rng.random((n, 14, 14))
    elif dist == "normal":
        low = rng.standard_normal((n, 14, 14))
    elif dist == "relu_normal":
        low = np.maximum(rng.standard_normal((n, 14, 14)), 0.0)
    else:
        raise ValueError(dist)
    my, mx = bilinear_matrix(14, height), bilinear_matrix(14, width)
    return np.einsum("yi,nij,xj->nyx", my, low, mx).astype(np.float32)


def main() -> None:
    """Parse arguments, time :func:`boxes_for_maps`, print maps/s per setting."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=400)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--height", type=int, default=375)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"largest_cc, {args.maps} maps of {args.width}x{args.height} (W x H), float32, "
          f"1 process (cpu_count={os.cpu_count()})")
    settings = [("t=0.20", (0.20,)), ("t=20/255", (20 / 255,)), ("t=100/255", (100 / 255,)),
                ("tight+loose", (20 / 255, 100 / 255))]
    for dist in ("uniform", "normal", "relu_normal"):
        cams = smooth_cams(args.maps, args.height, args.width, dist, rng)
        boxes_for_maps(cams[:10], (0.2,))  # warm-up
        for name, ts in settings:
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                boxes_for_maps(cams, ts)
                best = min(best, time.perf_counter() - t0)
            rate = args.maps * len(ts) / best
            print(f"  {dist:12s} {name:12s} {rate:8.0f} maps/s  ({1e3 / rate:.3f} ms/map)")
        # Reference floor of the obvious method: one scipy.ndimage.label per map, nothing else.
        fgs = [cam > np.float32(0.2) * cam.max() for cam in cams]
        structure = np.ones((3, 3), dtype=bool)
        t0 = time.perf_counter()
        for fg in fgs:
            ndimage.label(fg, structure=structure)
        rate = len(fgs) / (time.perf_counter() - t0)
        print(f"  {dist:12s} {'(ndimage.label alone, t=0.20)':s} {rate:8.0f} maps/s")


if __name__ == "__main__":
    main()
