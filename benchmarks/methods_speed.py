"""What each library method costs: maps/s through the harness vs a direct library call, and forward passes.

A script, not a test::

    python benchmarks/methods_speed.py [--model simplecnn_gap] [--images 4] [--repeats 3]
        [--methods grad-cam:GradCAM torchcam:ScoreCAM ...] [--csv results/benchmarks/methods_speed.csv]

For each method, on the same images (scikit-image's bundled photographs, through the model's own
input transform) and the same model, in the same process, alternately (best of ``--repeats`` each, in
CPU seconds of this process, ``time.process_time``, with ``--threads`` torch threads, default 1: the
machine is shared and wall time measures the other jobs as much as this one):

* **harness**: :func:`bench.core.maps.produce_maps` with the GT-known-sized request of one class per
  image (the top-1 class), under the engine's ``torch.no_grad()``, default layer;
* **direct**: the library as its README calls it, on the plain network ``model.net`` (``x ->
  logits``) with the module whose output is the same feature map (``--direct-layer``, default
  ``block4`` for the SimpleCNN demo nets); pytorch-grad-cam: ``with Cls(model, target_layers) as
  cam: cam(input_tensor, targets)``; torchcam: ``with Cls(model, target_layer) as ex:
  ex(class_idx, model(x))``.

``overhead_pct`` = harness time / direct time - 1 (the harness's wrapper, hooks and tensor copies;
many-pass methods are called one image at a time by the harness, as by the direct call here).
``forward_images_per_map`` is measured: the images the network forwarded during the harness call
(a forward pre-hook on the harness's model counts batch rows) divided by the maps made. Many-pass methods
(ScoreCAM, AblationCAM, SSCAM, ISCAM) run on ``--slow-images`` images with one repeat. One CSV row
per method is appended.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

# One BLAS/OpenMP thread, set before numpy and torch load their libraries: the SVDs of the Eigen methods
# would otherwise spin extra threads whose CPU time (under load) lands on one side of the comparison.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import append_rows  # noqa: E402

from bench.core.library_methods import MANY_PASSES, METHOD_NAMES, RANDOM_METHODS, SEED, available_methods, parse_method  # noqa: E402
from bench.core.maps import produce_maps  # noqa: E402
from bench.data.photos import PHOTOS, _load_photo  # noqa: E402
from bench.data.transforms import InputTransform  # noqa: E402
from bench.models import build_model  # noqa: E402


def load_images(model, n: int) -> torch.Tensor:  # noqa: ANN001
    """The first ``n`` bundled photographs through the model's input transform, ``(n, 3, S, S)``."""
    spec = model.spec
    transform = InputTransform(spec.input_size, spec.mean, spec.std, "bilinear", True)
    photos = [_load_photo(p) for p in PHOTOS[:n]]
    return torch.stack([transform(np.asarray(p.convert("RGB"))) for p in photos])


def direct_call(method: str, net: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The library called as its README shows (one class per image)."""
    import importlib

    library, name = parse_method(method)
    cls = getattr(importlib.import_module(library.module), name)
    with torch.enable_grad():
        if library.prefix == "grad-cam":
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            with cls(model=net, target_layers=[layer]) as cam:
                return torch.from_numpy(cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes[:, 0]]))
        kwargs = {"fc_layer": net.fc} if name == "CAM" else {}
        with cls(net, target_layer=layer, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
            return extractor(classes[:, 0].tolist(), net(x.clone()))[0].detach()


def timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process spent in ``fn()`` (the machine is shared: wall time is not ours)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="simplecnn_gap")
    parser.add_argument("--direct-layer", default="block4", help="module of model.net whose output is the default layer's feature map")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--slow-images", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=None, help="default: every available library method")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: CPU time is then stable)")
    parser.add_argument("--csv", type=Path, default=Path("results/benchmarks/methods_speed.csv"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, _info = build_model(args.model)
    model.eval()
    net = model.net
    layer = dict(net.named_modules())[args.direct_layer]
    methods = args.methods or [f"{p}:{n}" for p in METHOD_NAMES for n in available_methods(p)]
    images = load_images(model, max(args.images, args.slow_images))
    with torch.no_grad():
        top1 = model(images)[0].argmax(dim=1, keepdim=True)

    forwarded = [0]
    hook = model.register_forward_pre_hook(lambda _m, inp: forwarded.__setitem__(0, forwarded[0] + int(inp[0].shape[0])))
    rows = []
    for method in methods:
        many = method in MANY_PASSES
        n = args.slow_images if many else args.images
        repeats = 1 if many else args.repeats
        x, classes = images[:n], top1[:n]
        seed = (lambda: (torch.manual_seed(SEED), np.random.seed(SEED))) if method in RANDOM_METHODS else (lambda: None)
        harness_t, direct_t, passes = [], [], 0.0
        def run_harness() -> None:
            forwarded[0] = 0
            with torch.no_grad():  # the engine's grad_context for every method but cam
                harness_t.append(timed(lambda: produce_maps(model, x, classes, method)))

        def run_direct() -> None:
            seed()
            direct_t.append(timed(lambda: [direct_call(method, net, layer, x[i : i + 1], classes[i : i + 1]) for i in range(n)]
                                  if many else direct_call(method, net, layer, x, classes)))  # fmt: skip

        for r in range(repeats):  # alternate which side goes first
            for side in ((run_harness, run_direct) if r % 2 == 0 else (run_direct, run_harness)):
                side()
                if side is run_harness:
                    passes = forwarded[0] / n
        h, d = min(harness_t), min(direct_t)
        library, name = parse_method(method)
        row = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": args.model,
            "input_size": model.spec.input_size,
            "method": method,
            "library_version": version(library.package),
            "images": n,
            "repeats": repeats,
            "clock": "process_time",
            "harness_maps_s": round(n / h, 3),
            "direct_maps_s": round(n / d, 3),
            "overhead_pct": round(100 * (h / d - 1), 1),
            "forward_images_per_map": round(passes, 1),
            "load_avg": round(os.getloadavg()[0], 2),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
        }
        rows.append(row)
        print(f"{method:28s} harness {row['harness_maps_s']:9.3f} maps/s  direct {row['direct_maps_s']:9.3f} maps/s  "
              f"overhead {row['overhead_pct']:6.1f}%  forwards/map {row['forward_images_per_map']:8.1f}  (load {row['load_avg']})", flush=True)  # fmt: skip
    hook.remove()
    append_rows(args.csv, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
