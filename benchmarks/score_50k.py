"""`bench score --suite wsol_ilsvrc` of 50,000 saved maps on wsolevaluation's ILSVRC metadata alone
(no image files): wall time and peak RSS (a script, not a test).

    python benchmarks/score_50k.py                       # 50,000 maps, appends a row to results/benchmarks/score_50k.csv
    python benchmarks/score_50k.py --n 2000 --no-record  # a quick look

The metadata is wsolevaluation's ``metadata/ILSVRC/test`` layout (``image_ids.txt``,
``class_labels.txt``, ``image_sizes.txt``, ``localization.txt``) built from the ILSVRC 2012
validation boxes shipped in ``bench/resources/ilsvrc2012_val_boxes.csv.gz`` (real box geometry and
labels, first ``--n`` images). The shipped file has no image sizes; each image's size is drawn
(seeded) so that it holds every box: ``width = max(500, xmax + 1)`` or, for boxes reaching past
500 px, the box edge plus 0-31 px, and the same for ``height`` with 375 (ImageNet's commonest
500 x 375 frame). The maps are wsolevaluation's own saved form: one ``val/<image>.JPEG.npy`` per
image, ``--size`` x ``--size`` float32 (224: what its ``inference.py`` writes): a bump near a GT box
plus noise on a 28 x 28 feature grid, resized bilinearly to 224 like a CAM, seeded. No image file exists, so every size comes from ``image_sizes.txt``.

The score runs in a fresh child process (``bench score ... --workers W``); its own peak RSS
(``VmHWM``) and those of its worker processes (the largest, ``RUSAGE_CHILDREN``) are reported with
the wall time, the CPU seconds of the score and its workers (on a shared machine the wall time
depends on the other jobs; ``cpu_s / cores`` is the wall time the same work needs on free cores),
the machine's load average at the start, and the numbers the run computed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows, own_peak_rss_kb  # noqa: E402

#: feature-map side of the generated CAMs (ResNet-50 in wsolevaluation's setting: 28 x 28 at 224 input)
GRID = 28
BOXES = Path(__file__).resolve().parents[1] / "bench" / "resources" / "ilsvrc2012_val_boxes.csv.gz"


def write_metadata(root: Path, n: int, seed: int = 0) -> list[tuple[str, list[list[int]], tuple[int, int]]]:
    """wsolevaluation's ILSVRC test metadata for the first ``n`` validation images under ``root``;
    returns ``(relative image path, boxes, (width, height))`` per image."""
    rng = np.random.default_rng(seed)
    boxes: dict[str, tuple[int, list[list[int]]]] = {}
    with gzip.open(BOXES, "rt") as fh:
        next(fh)
        for line in fh:
            image_id, _devkit, label, _wnid, *xyxy = line.rstrip("\n").split(",")
            if image_id not in boxes:
                if len(boxes) == n:
                    break
                boxes[image_id] = (int(label), [])
            boxes[image_id][1].append([int(v) for v in xyxy])
    meta = root / "metadata" / "ILSVRC" / "test"
    meta.mkdir(parents=True, exist_ok=True)
    images = []
    ids, labels, sizes, locs = [], [], [], []
    for image_id, (label, bxs) in boxes.items():
        rel = f"val/{image_id}.JPEG"
        arr = np.asarray(bxs)
        right, bottom = int(arr[:, 2].max()) + 1, int(arr[:, 3].max()) + 1
        width = 500 if right <= 500 else right + int(rng.integers(0, 32))
        height = 375 if bottom <= 375 else bottom + int(rng.integers(0, 32))
        ids.append(rel)
        labels.append(f"{rel},{label}")
        sizes.append(f"{rel},{width},{height}")
        locs += [f"{rel},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in bxs]
        images.append((rel, bxs, (width, height)))
    for name, rows in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes), ("localization.txt", locs)):
        (meta / name).write_text("".join(r + "\n" for r in rows))
    return images


def write_maps(folder: Path, images: list[tuple[str, list[list[int]], tuple[int, int]]], size: int, seed: int = 0) -> int:
    """One ``size`` x ``size`` float32 map per image (wsolevaluation's ``<image path>.npy``); returns bytes written."""
    import torch

    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:GRID, 0:GRID].astype(np.float32) + 0.5) / GRID
    total = 0
    (folder / "val").mkdir(parents=True, exist_ok=True)
    for rel, bxs, (w, h) in images:
        x0, y0, x1, y1 = bxs[int(rng.integers(len(bxs)))]
        cx, cy = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
        sx, sy = max((x1 - x0) / w, 0.05) / 2, max((y1 - y0) / h, 0.05) / 2
        bump = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2)
        grid = (bump + 0.15 * rng.random((GRID, GRID), dtype=np.float32)).astype(np.float32)
        # a CAM is made at feature resolution and resized to 224 (wsolevaluation: cv2.resize, bilinear)
        cam = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None], size=(size, size), mode="bilinear",
                                              align_corners=False)[0, 0].numpy()  # fmt: skip
        path = folder / f"{rel}.npy"
        np.save(path, cam)
        total += path.stat().st_size
    return total


def child(args: list[str]) -> int:
    from bench.cli import main as bench_main

    code = bench_main(["score", *args])
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime  # this process and its worker processes
    print(json.dumps([own_peak_rss_kb(), kids.ru_maxrss, cpu]))
    return code


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="maps (first N validation images)")
    parser.add_argument("--size", type=int, default=224, help="map side in pixels (default 224, wsolevaluation's)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="bench score --workers (default: every core)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the metadata, maps and run (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/score_50k.csv"))
    parser.add_argument("--no-record", action="store_true", help="print the row, do not append it")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="score50k-"))
    try:
        start = time.perf_counter()
        images = write_metadata(work / "data", args.n)
        map_bytes = write_maps(work / "maps", images, args.size)
        print(f"wrote {len(images)} maps ({map_bytes / 1e9:.2f} GB) and the metadata in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        load = os.getloadavg()[0]
        run_args = [str(work / "maps"), "--data", str(work / "data"), "--suite", "wsol_ilsvrc", "--out", str(work / "results"),
                    "--workers", str(args.workers), "--no-progress"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", *run_args], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        own, workers, cpu = json.loads(proc.stdout.strip().splitlines()[-1])
        run = work / "results" / "wsol_ilsvrc" / "maps-maps"
        summary = json.loads((run / "summary.json").read_text())
        sweep = json.loads((run / "sweep.json").read_text())
        row = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "maps": args.n,
            "map_size": args.size,
            "image_files": 0,
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "load_avg_1min_at_start": round(load, 2),
            "wall_s": round(seconds, 1),
            "maps_per_s": round(args.n / seconds, 1),
            "cpu_s": round(cpu, 1),  # CPU seconds of the score and its workers: what other jobs disturb least
            "cpu_ms_per_map": round(1000 * cpu / args.n, 2),
            "peak_rss_mb": round(own / 1024, 1),
            "peak_rss_worker_mb": round(workers / 1024, 1),
            "scored": summary.get("scored"),
            "failed": summary.get("failed"),
            "maxboxacc": sweep.get("maxboxacc"),
            "maxboxacc_v2": sweep.get("maxboxacc_v2"),
            "step": sweep.get("step"),
        }
        print(json.dumps(row, indent=2))
        if not args.no_record:
            append_rows(args.out, [row])
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
