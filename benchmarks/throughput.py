"""Throughput benchmark (a script, not a test): forward-only vs end-to-end `bench run`, in ONE process.

    python benchmarks/throughput.py --model efficientnet_lite0 --images 256 --batch-size 32

What it measures, on the same images and in the same process:
  forward_ips    images/s of the model alone on preprocessed batches (tensors already in memory,
                 inference_mode), i.e. the speed of the network itself;
  e2e_ips        images/s of the whole `bench run` pipeline (decode, resize, forward, CAMs,
                 upsampling to original size, boxes, scoring, shard writes), warm;
  ratio          e2e_ips / forward_ips;
  box_maps_ps    largest_cc maps/s on one core at the images' original size;
  peak_rss_mb    the process's peak resident memory.
It appends one row to a CSV (timm-style results file) with the machine description.

The images are 500x375 (the typical ILSVRC size) crops of scikit-image's photographs, written in
ILSVRC layout to a temporary folder, so the script needs no ImageNet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows  # noqa: E402


def make_images(out: Path, n: int, seed: int = 0) -> Path:
    """n 500x375 JPEGs cut from the bundled photographs, with a GT box each, in VOC layout."""
    from PIL import Image

    from bench.data.classes import load_wnids
    from bench.data.fixtures import write_ilsvrc_layout
    from bench.data.photos import PHOTOS, _load_photo

    rng = np.random.default_rng(seed)
    photos = [(p, np.asarray(_load_photo(p).convert("RGB"))) for p in PHOTOS]
    samples = []
    for i in range(n):
        photo, rgb = photos[i % len(photos)]
        img = Image.fromarray(rgb).resize((500, 375), Image.BILINEAR)
        arr = np.asarray(img)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        sx, sy = 500 / rgb.shape[1], 375 / rgb.shape[0]
        b = np.array(photo.boxes[0], dtype=float)
        box = np.array([[int(b[0] * sx), int(b[1] * sy), min(int(b[2] * sx), 499), min(int(b[3] * sy), 374)]])
        samples.append((f"BENCH_val_{i + 1:08d}", np.ascontiguousarray(arr), photo.wnid, box))
    wnids = load_wnids()
    roots = write_ilsvrc_layout(out, samples, layouts=("csv",), wnids=wnids)
    return roots["csv"]


def forward_only(model, batches: list[torch.Tensor], device: torch.device) -> float:
    with torch.inference_mode():
        model(batches[0].to(device))  # warm-up
        start = time.perf_counter()
        n = 0
        for x in batches:
            logits, feats = model(x.to(device))
            n += x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--suite", default="ilsvrc_loc")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--box-workers", type=int, default=None, help="threads for box extraction (default: engine's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--csv", type=Path, default=Path("results/benchmarks/throughput.csv"))
    parser.add_argument("--data", type=Path, default=None, help="existing ILSVRC-layout data (else generated)")
    args = parser.parse_args()

    from bench.core.boxes import boxes_for_maps
    from bench.data.open import open_dataset
    from bench.data.transforms import InputTransform, decode_rgb
    from bench.run.engine import RunConfig, run_suite
    from bench.models import build_model
    from bench.core.protocol import load_protocol
    from bench.run.results import RunDir

    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    data = args.data or make_images(tmp / "data", args.images)
    valset = open_dataset(data)
    protocol = load_protocol(args.suite)
    model, info = build_model(args.model, args.weights)
    model.eval().to(device)
    spec = model.spec
    transform = InputTransform(spec.input_size, spec.mean, spec.std, protocol.interpolation, protocol.antialias)
    images = valset.images[: args.images]

    # Forward-only on preprocessed batches.
    tensors = torch.stack([transform(decode_rgb(g.path)) for g in images])
    batches = list(tensors.split(args.batch_size))
    fwd_before = forward_only(model, batches, device)

    # End to end: a warm-up run on one batch, then the measured run into a fresh folder.
    config = RunConfig(device=str(device), batch_size=args.batch_size, workers=args.workers, limit=len(images), shard_size=1000, progress=False)
    if args.box_workers is not None:
        config = RunConfig(**{**config.__dict__, "box_workers": args.box_workers})
    warm = RunConfig(**{**config.__dict__, "limit": args.batch_size})
    run_suite(protocol, valset, model, info, RunDir(tmp / "warm"), warm)
    start = time.perf_counter()
    run_suite(protocol, valset, model, info, RunDir(tmp / "run"), config)
    e2e = len(images) / (time.perf_counter() - start)
    # Forward-only again after the end-to-end run; the mean of both passes is the reference, so a
    # drift in machine speed during the measurement does not bias the ratio.
    fwd = (fwd_before + forward_only(model, batches, device)) / 2

    # Box extraction alone, one core, on realistic CAMs (bilinear upsampling of a 14x14 map).
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((64, 1, 14, 14), dtype=np.float32))
    maps = torch.nn.functional.interpolate(small, size=(375, 500), mode="bilinear", align_corners=False)[:, 0].numpy()
    torch_threads = torch.get_num_threads()
    start = time.perf_counter()
    boxes_for_maps(maps, protocol.thresholds)
    box_rate = len(maps) / (time.perf_counter() - start)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "suite": args.suite,
        "device": str(device),
        "images": len(images),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "box_workers": config.resolved_box_workers(),
        "torch_threads": torch_threads,
        "forward_ips": round(fwd, 2),
        "e2e_ips": round(e2e, 2),
        "ratio": round(e2e / fwd, 3),
        "box_maps_ps": round(box_rate, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.uname().machine,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for k, v in row.items():
        print(f"{k:14s} {v}")
    append_rows(args.csv, [row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
