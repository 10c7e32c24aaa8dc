"""Threshold sweeps over saved maps with 1 and N worker processes: maps/s and peak RSS.

A script, not a test::

    python benchmarks/sweep_parallel.py [--maps 5000] [--small 500] [--workers 1 2] [--step 0.001]

Writes ``--maps`` CAM-like maps at feature resolution (14x14 float16, ReLU'd normals, as a run's
map cache holds them) in shards of 1,000 with a GT box and an ILSVRC-like image size each, then
sweeps them in a fresh child process per setting exactly as `bench sweep` does per map
(:func:`bench.analysis.run_metrics.sweep_counts`: bilinear upsampling to 224x224, boxes scaled,
compiled sweep at every threshold), streamed one shard at a time through
:func:`bench.run.parallel.map_in_processes`, and accumulated in order. Per setting it reports
maps/s (wall clock of the whole sweep, pool start-up included, and after the first map), the peak
RSS of the main process (its own ``VmHWM``) and of the largest worker (``RUSAGE_CHILDREN``: an
upper bound, a started process inherits its parent's ``ru_maxrss``), for ``--small`` and
``--maps`` maps,
and the maps per CPU-second of all processes together (from the difference between the two runs,
so start-up cancels out: the rate one free core sustains; on a shared machine the wall-clock rate
also depends on the other load). It appends one CSV row per setting; the results of all settings
are checked identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows, own_peak_rss_kb  # noqa: E402

SHARD = 1000


def write_maps(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` 14x14 float16 maps in shards of 1,000 (``cams``, ``boxes``, ``sizes`` per shard)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range((n + SHARD - 1) // SHARD):
        m = min(SHARD, n - k * SHARD)
        cams = np.maximum(rng.standard_normal((m, 14, 14)), 0).astype(np.float16)
        sizes = np.stack([rng.integers(300, 501, m), rng.integers(300, 501, m)], axis=1)  # (height, width)
        x0 = (rng.random(m) * sizes[:, 1] * 0.4).astype(int)
        y0 = (rng.random(m) * sizes[:, 0] * 0.4).astype(int)
        x1 = np.minimum(x0 + (sizes[:, 1] * (0.3 + 0.5 * rng.random(m))).astype(int), sizes[:, 1] - 1)
        y1 = np.minimum(y0 + (sizes[:, 0] * (0.3 + 0.5 * rng.random(m))).astype(int), sizes[:, 0] - 1)
        np.savez(folder / f"shard-{k:05d}.npz", cams=cams, boxes=np.stack([x0, y0, x1, y1], axis=1), sizes=sizes)


def child(folder: Path, n: int, workers: int, step: float) -> dict:
    from bench.analysis.run_metrics import SweepItem, SweepSettings, sweep_counts
    from bench.core.sweep import SweepAccumulator
    from bench.run.parallel import map_in_processes

    thresholds = tuple(np.round(np.arange(0.0, 1.0, step), 10).tolist())
    settings = SweepSettings(thresholds, "224", "bilinear", None)

    def items():  # noqa: ANN202 - one shard in memory at a time
        done = 0
        for path in sorted(folder.glob("shard-*.npz")):
            with np.load(path) as z:
                cams, boxes, sizes = z["cams"], z["boxes"], z["sizes"]
            for i in range(len(cams)):
                if done == n:
                    return
                yield SweepItem(f"map{done}", cams[i], boxes[i : i + 1], (int(sizes[i, 0]), int(sizes[i, 1])))
                done += 1

    acc = SweepAccumulator(thresholds=thresholds)
    start = time.perf_counter()
    first = None
    for counts in map_in_processes(partial(sweep_counts, settings), items(), workers, None, total=n):
        acc.add_counts(counts)
        if first is None:
            first = time.perf_counter() - start
    seconds = time.perf_counter() - start
    res = acc.results()
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "first_s": first,
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,  # workers joined: counted
        "rss_kb": own_peak_rss_kb(),
        "worker_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "curve_sum": float(res["curves"].drop(columns="tau").to_numpy().sum()),
        "maxboxacc": res["maxboxacc"],
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        folder, n, workers, step = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        print(json.dumps(child(folder, n, workers, step)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=5000)
    ap.add_argument("--small", type=int, default=500)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--step", type=float, default=0.001)
    ap.add_argument("--csv", type=Path, default=Path("results/benchmarks/sweep_parallel.csv"))
    ap.add_argument("--no-csv", action="store_true")
    args = ap.parse_args()
    import numba

    from bench.core.sweep import sweep_backend

    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-maps-"))
    write_maps(folder, args.maps)
    print(
        f"sweeps of {args.maps} saved 14x14 maps upsampled to 224x224, {len(np.arange(0, 1, args.step))} thresholds, "
        f"backend {sweep_backend()}, cpu_count={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    rows, sums = [], set()
    for workers in args.workers:
        stats = {}
        for n in (args.small, args.maps):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(folder), str(n), str(workers), str(args.step)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            stats[n] = json.loads(out.stdout.strip().splitlines()[-1])
        big, small = stats[args.maps], stats[args.small]
        sums.add((big["curve_sum"], big["maxboxacc"]))
        rate = args.maps / big["seconds"]
        steady = (args.maps - 1) / (big["seconds"] - big["first_s"])
        worker_mb = big["worker_rss_kb"] / 1024 if workers > 1 else float("nan")
        # CPU seconds per map from the difference of the two runs (start-up cancels out)
        per_core = (args.maps - args.small) / (big["cpu_s"] - small["cpu_s"])
        ratio = big["rss_kb"] / small["rss_kb"]
        print(
            f"  workers={workers}: {rate:7.1f} maps/s over {args.maps} maps ({big['seconds']:.1f} s, start-up "
            f"included; {steady:.1f} maps/s after the first map at {big['first_s']:.1f} s); peak RSS main "
            f"{small['rss_kb'] / 1024:.0f} -> {big['rss_kb'] / 1024:.0f} MB ({args.small} -> {args.maps} maps, "
            f"x{ratio:.3f}), largest worker {worker_mb:.0f} MB; projected 50,000 maps: "
            f"{(big['first_s'] + 50000 / steady) / 60:.1f} min at this rate; {per_core:.0f} maps per CPU-second"
        )
        rows.append({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "maps": args.maps,
            "thresholds": len(np.arange(0, 1, args.step)), "workers": workers, "maps_s": round(rate, 1), "steady_maps_s": round(steady, 1),
            "first_map_s": round(big["first_s"], 2), "maps_per_cpu_s": round(per_core, 1),
            "seconds": round(big["seconds"], 1), "small": args.small,
            "rss_small_mb": round(small["rss_kb"] / 1024, 1), "rss_large_mb": round(big["rss_kb"] / 1024, 1),
            "rss_ratio": round(ratio, 3), "worker_rss_large_mb": round(worker_mb, 1),
            "projected_50k_min": round((big["first_s"] + 50000 / steady) / 60, 2), "backend": sweep_backend(),
            "load_avg": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "numba": numba.__version__,
        })  # fmt: skip
    if len(sums) != 1:
        print(f"results differ between worker counts: {sums}", file=sys.stderr)
        return 1
    print("results identical for every worker count")
    if not args.no_csv:
        append_rows(args.csv, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
