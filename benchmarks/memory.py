"""Peak memory vs number of images (a script, not a test): does `bench run` stream?

    python benchmarks/memory.py --model efficientnet_lite0 --small 500 --large 5000

Writes ``--large`` 500x375 JPEGs once (cut from the bundled photographs, see throughput.py), then runs
`bench run` in a fresh subprocess on the first ``--small`` images and on all ``--large`` images and
reports each child's own peak RSS (``VmHWM``, see :func:`own_peak_rss_kb`) and their ratio. A
streaming run keeps the ratio near 1: records are flushed per shard and CAMs never accumulate. The
DataLoader workers' figure (``RUSAGE_CHILDREN``) is an upper bound: forked workers inherit the
main process's ``ru_maxrss`` at the fork.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import own_peak_rss_kb  # noqa: E402
from throughput import make_images  # noqa: E402


def peak_rss_of_run(args: list[str]) -> tuple[float, float, float]:
    """Run `bench run ...` in a fresh child process (this script with --child).

    Returns (peak RSS MB of the run's main process, peak RSS MB of its largest DataLoader worker,
    seconds). Each figure is that child's own peak (VmHWM), so runs do not contaminate each other.
    """
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    own, workers = json.loads(proc.stdout.strip().splitlines()[-1])
    return own / 1024, workers / 1024, seconds


def child(args: list[str]) -> int:
    from bench.cli import main as bench_main

    code = bench_main(["run", *args])
    # KiB on Linux.
    print(json.dumps([own_peak_rss_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))
    return code


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=Path("results/benchmarks/memory.csv"))
    parser.add_argument("--data", type=Path, default=None, help="existing ILSVRC-layout data with >= --large images")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    data = args.data or make_images(tmp / "data", args.large)
    rows = []
    for n in (args.small, args.large):
        flags = ["--suite", "ilsvrc_loc", "--model", args.model, "--data", str(data), "--limit", str(n),
                 "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--out", str(tmp / f"out{n}"), "--no-progress"]
        rss, worker_rss, seconds = peak_rss_of_run(flags)
        rows.append({"images": n, "peak_rss_mb": round(rss, 1), "worker_peak_rss_mb": round(worker_rss, 1),
                     "seconds": round(seconds, 1), "ips": round(n / seconds, 2)})
        print(rows[-1])
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"peak RSS ratio {args.large}/{args.small} images: {ratio:.3f}")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new = not args.csv.exists()
    with args.csv.open("a", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["date", "model", "small", "large", "rss_small_mb", "rss_large_mb", "ratio", "rss_measure"]
        )
        if new:
            writer.writeheader()
        writer.writerow({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "model": args.model,
            "small": args.small, "large": args.large, "rss_small_mb": rows[0]["peak_rss_mb"],
            "rss_large_mb": rows[1]["peak_rss_mb"], "ratio": round(ratio, 3), "rss_measure": "VmHWM",
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
