"""GPU run loop: forward-only vs end-to-end `bench run`, in one process, projected to 50,000 images.

A script, not a test. On a GPU machine (one prepared command, a few minutes on an H100)::

    python benchmarks/gpu_throughput.py --device cuda --images 10000 --label h100

On the CPU (a smoke run with a small N; the rows are labelled with --label)::

    python benchmarks/gpu_throughput.py --device cpu --images 64 --batch-size 32 --label cpu-smoke

What it does:
  1. writes ``--images`` ILSVRC-sized JPEGs (500x375, cut from scikit-image's photographs, with GT
     boxes; ``throughput.make_images``; needs the demo extra) in ILSVRC layout;
  2. for each of ``--models`` (default efficientnet_lite0, googlenet_gap, resnet50; a random init,
     as speed does not depend on the values -- ``--pretrained`` loads weights where installed):
     * ``forward_ips``: the network alone on one preprocessed batch of ``--batch-size`` images held
       on the device, ``--forward-iters`` passes (same autocast as the run), measured before and
       after the end-to-end runs, their mean;
     * end-to-end `bench run` (``bench.run.engine.run_suite``: decode -- on the GPU with
       ``--decode auto`` on CUDA --, resize, forward, CAMs, top-5 boxes in the box worker pool,
       scoring, shard writes) on the first quarter of the images and on all of them, into fresh
       folders after a one-batch warm-up run; ``e2e_ips`` is the steady rate from the difference
       of the two (pool and loader start-up cancel out), ``startup_s`` what is left over;
     * ``ratio`` = e2e_ips / forward_ips (goal on a GPU: >= 0.9) and ``projected_50k_s`` =
       startup_s + 50,000 / e2e_ips (goal for googlenet_gap on one H100/H200: <= 60 s);
  3. prints one line per model and appends one CSV row each (``--csv``) with the device named.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows  # noqa: E402
from throughput import make_images  # noqa: E402

MODELS = ("efficientnet_lite0", "googlenet_gap", "resnet50")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_ips(model, x: torch.Tensor, iters: int, amp: str) -> float:  # noqa: ANN001
    """Images/s of the network alone on one batch already on the device."""
    from bench.core.maps import forward

    with torch.inference_mode():
        forward(model, x, amp)  # warm-up (cuDNN algorithm choice, lazy init)
        _sync(x.device)
        start = time.perf_counter()
        for _ in range(iters):
            forward(model, x, amp)
        _sync(x.device)
    return iters * x.shape[0] / (time.perf_counter() - start)


def build(name: str, pretrained: bool):  # noqa: ANN201
    """A random init (speed does not depend on the values; no weights looked up, no download tried
    on a machine without internet), or with ``pretrained`` the registry's weights where available."""
    from bench.models import build_model

    if not pretrained:
        return build_model(name, pretrained=False)
    try:
        return build_model(name)
    except Exception as exc:  # no weights installed / downloadable: random init, same speed
        print(f"  {name}: no weights ({type(exc).__name__}); timing a random init", file=sys.stderr)
        return build_model(name, pretrained=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--forward-iters", type=int, default=20)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the engine's)")
    ap.add_argument("--box-workers", type=int, default=None, help="box workers (default: the engine's)")
    ap.add_argument("--decode", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    ap.add_argument("--suite", default="ilsvrc_loc")
    ap.add_argument("--pretrained", action="store_true", help="load the registry's weights where available (default: random init)")
    ap.add_argument("--data", type=Path, default=None, help="existing ILSVRC-layout data (else generated)")
    ap.add_argument("--label", default="", help="free text written in every row (e.g. cpu-smoke, h100)")
    ap.add_argument("--csv", type=Path, default=Path("results/benchmarks/gpu_throughput.csv"))
    ap.add_argument("--no-csv", action="store_true")
    args = ap.parse_args()

    from bench.core.protocol import load_protocol
    from bench.data.open import open_dataset
    from bench.data.transforms import InputTransform, decode_rgb
    from bench.run.engine import RunConfig, run_suite
    from bench.run.results import RunDir
    from bench.runtime import resolve_device

    device = torch.device(resolve_device(args.device))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-throughput-"))
    t0 = time.perf_counter()
    data = args.data or make_images(tmp / "data", args.images)
    print(f"{args.images} images ready in {time.perf_counter() - t0:.0f} s under {data}; device {device} ({device_name})")
    valset = open_dataset(data)
    protocol = load_protocol(args.suite)
    n_all = min(args.images, len(valset.images))
    n_small = max(args.batch_size, n_all // 4)
    rows = []
    for name in args.models:
        model, info = build(name, args.pretrained)
        model.eval().to(device)
        spec = model.spec
        transform = InputTransform(spec.input_size, spec.mean, spec.std, protocol.interpolation, protocol.antialias)
        first = valset.images[: args.batch_size]
        x = torch.stack([transform(decode_rgb(g.path)) for g in first]).to(device)
        fwd_before = forward_ips(model, x, args.forward_iters, args.amp)
        config = RunConfig(
            device=str(device), batch_size=args.batch_size, workers=args.workers, limit=n_all, shard_size=1000,
            progress=False, amp=args.amp, box_workers=args.box_workers, decode=args.decode,
        )  # fmt: skip
        run_suite(protocol, valset, model, info, RunDir(tmp / f"{name}-warm"), RunConfig(**{**config.__dict__, "limit": args.batch_size}))
        seconds = {}
        for n in (n_small, n_all):
            _sync(device)
            start = time.perf_counter()
            run_suite(protocol, valset, model, info, RunDir(tmp / f"{name}-{n}"), RunConfig(**{**config.__dict__, "limit": n}))
            _sync(device)
            seconds[n] = time.perf_counter() - start
        fwd = (fwd_before + forward_ips(model, x, args.forward_iters, args.amp)) / 2
        if n_all > n_small and seconds[n_all] > seconds[n_small]:
            e2e = (n_all - n_small) / (seconds[n_all] - seconds[n_small])
        else:  # too few images for two sizes: the plain rate
            e2e = n_all / seconds[n_all]
        startup = max(0.0, seconds[n_all] - n_all / e2e)
        projected = startup + 50000 / e2e
        row = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "label": args.label, "model": name, "weights": info.source, "device": str(device),
            "device_name": device_name, "images": n_all, "batch_size": args.batch_size, "amp": args.amp,
            "decode": config.resolved_decode(), "workers": config.resolved_workers(),
            "box_workers": config.resolved_box_workers(), "forward_ips": round(fwd, 1), "e2e_ips": round(e2e, 1),
            "ratio": round(e2e / fwd, 3), "startup_s": round(startup, 1), "projected_50k_s": round(projected, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "gpu_peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else "",
            "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        }  # fmt: skip
        rows.append(row)
        print(
            f"  {name:18s} forward {fwd:8.1f} img/s  end-to-end {e2e:8.1f} img/s  ratio {e2e / fwd:.2f}  "
            f"start-up {startup:.1f} s  projected 50,000 images: {projected:.0f} s ({projected / 60:.1f} min)"
        )
        model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not args.no_csv:
        append_rows(args.csv, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
