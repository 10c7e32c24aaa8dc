"""The table of docs/methods.md: every library method (and the native ones, and the centre baseline)
on one data set and model, scored with the CAM protocol and wsolevaluation's MaxBoxAccV2.

One command makes the table (runs are ordinary `bench run` folders under ``--out``; finished runs
are reused, so the command resumes)::

    bench data photos --out data/photos
    python scripts/methods_table.py --data data/photos/voc --model efficientnet_lite0 \\
        --out results/methods --md docs/methods.md

For each method: suite ``ilsvrc_loc`` (top-1 / top-5 localization error, GT-known error: the top-5
classes' maps and the GT class's) and suite ``--wsol-suite`` (default ``wsol_ilsvrc``: MaxBoxAccV2
from the GT class's map only). Methods that forward the network once per channel
(:data:`bench.core.library_methods.MANY_PASSES`) run only the wsol suite (the GT class's map: its
GT-known error and MaxBoxAccV2; top-k "not run") unless ``--slow-topk``; SSCAM and ISCAM (35 K and
10 K forwards per map) run only with ``--slowest``. ``--layer`` sets the target layer of every
library and gradient method (default: the native Grad-CAM's). Other data sets: the same command with
``--data`` (and ``--wsol-suite wsol_cub`` / ``wsol_openimages``, ``--suite cub_loc``), see docs/methods.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from bench.core.library_methods import MANY_PASSES, METHOD_NAMES, available_methods, method_cost  # noqa: E402
from bench.run.engine import RunConfig  # noqa: E402
from bench.core.protocol import load_protocol  # noqa: E402
from bench.run.suite import SuiteRequest, run_folder, run_named_suite  # noqa: E402

SLOWEST = ("torchcam:SSCAM", "torchcam:ISCAM")
NATIVE = ("cam", "gradcam", "gradcampp")
NOT_RUN = "not run (cost)"
#: Markers of the table inside a document (``--md docs/methods.md`` rewrites only what is between them).
START, END = "<!-- methods-table:start -->", "<!-- methods-table:end -->"


def _run(suite: str, model: str, method: str | None, args: argparse.Namespace) -> dict:
    request = SuiteRequest(suite=suite, models=(model,), data=args.data, out=args.out, method=method,
                           weights=(args.weights,) if args.weights is not None and model != "center" else (),
                           gt_layout=args.gt_layout, metadata=args.metadata, masks=args.masks, split=args.split,
                           layer=args.layer if method not in (None, "cam") else None, verbose=False,
                           step=args.step if suite == args.wsol_suite else None)  # fmt: skip
    config = RunConfig(device=args.device, batch_size=args.batch_size, workers=0, progress=not args.no_progress)
    (run, *_rest) = run_named_suite(request, config)
    summary = json.loads((run.path / "summary.json").read_text())
    sweep_file = run.path / "sweep.json"
    if sweep_file.is_file():
        sweep = json.loads(sweep_file.read_text())
        summary["wsol_score"] = sweep.get("maxboxacc_v2") if sweep.get("maxboxacc_v2") is not None else sweep.get("pxap")
    return summary


def _finished(args: argparse.Namespace, model: str, method: str | None, slow: bool) -> bool:
    """Whether the runs this row needs are finished under ``--out`` (``--finished-only``)."""
    suites = [args.wsol_suite] if slow and not args.slow_topk else [args.suite, args.wsol_suite]
    name = "center" if model == "center" else model
    return all(run_folder(args.out, load_protocol(s).with_method(method), name).is_complete() for s in suites)


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--out", type=Path, default=Path("results/methods"))
    parser.add_argument("--suite", default="ilsvrc_loc")
    parser.add_argument("--wsol-suite", default="wsol_ilsvrc")
    parser.add_argument("--step", type=float, default=None, help="wsol threshold step (default: the suite's, 0.001)")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--weights", type=Path, default=None, help="weights file of --model (e.g. a model trained on CUB)")
    parser.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"])
    parser.add_argument("--metadata", type=Path, default=None, help="wsolevaluation metadata folder if not under --data")
    parser.add_argument("--masks", type=Path, default=None, help="folder the wsol mask paths are relative to (OpenImages)")
    parser.add_argument("--split", default=None, help="as bench run --split (default: test)")
    parser.add_argument("--methods", nargs="*", default=None, help="default: native, every library method, center")
    parser.add_argument("--slow-topk", action="store_true", help="also run the top-k suite for the many-pass methods")
    parser.add_argument("--slowest", action="store_true", help="also run SSCAM and ISCAM")
    parser.add_argument("--skip-slow", action="store_true", help="do not run the many-pass methods (rows say so)")
    parser.add_argument("--finished-only", action="store_true",
                        help="run nothing: table the runs already finished under --out (other rows say 'not run here')")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--md", type=Path, default=None,
                        help="write the Markdown table here (else stdout); a file holding the markers "
                             f"{START} ... {END} keeps everything outside them")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    methods = args.methods or [*NATIVE, *(f"{p}:{n}" for p in METHOD_NAMES for n in available_methods(p)), "center"]
    methods = [m for m in methods if m not in MANY_PASSES] + [m for m in methods if m in MANY_PASSES]  # cheap ones first
    rows = []
    for method in methods:
        if method in SLOWEST and not args.slowest:
            rows.append((method, {}, {}, "not run here (needs --slowest)"))
            continue
        if method in MANY_PASSES and args.skip_slow:
            rows.append((method, {}, {}, "not run here (--skip-slow)"))
            continue
        model = "center" if method == "center" else args.model
        m = None if method in ("center", "cam") else method
        slow = method in MANY_PASSES
        if args.finished_only and not _finished(args, model, m, slow):
            rows.append((method, {}, {}, "not run here"))
            continue
        loc = _run(args.suite, model, m, args) if (not slow or args.slow_topk) else {}
        wsol = _run(args.wsol_suite, model, m, args)
        rows.append((method, loc, wsol, ""))
        print(f"{method}: done", file=sys.stderr, flush=True)

    score = "PxAP" if args.wsol_suite == "wsol_openimages" else "MaxBoxAccV2"
    header = ("| Method | Passes per map | GT-known loc. err. | Top-1 loc. err. | Top-5 loc. err. | {score} |\n"
              "| --- | --- | ---: | ---: | ---: | ---: |").format(score=score)  # fmt: skip
    lines = [header]
    for method, loc, wsol, note in rows:
        cost = "—" if method == "center" else ("native" if method in NATIVE else method_cost(method))
        if note:
            lines.append(f"| {method} | {cost} | {note} | | | |")
            continue
        gt_known = loc.get("gt_known_loc_err", wsol.get("gt_known_loc_err"))
        top1 = loc.get("top1_loc_err", NOT_RUN) if loc else NOT_RUN
        top5 = loc.get("top5_loc_err", NOT_RUN) if loc else NOT_RUN
        if loc.get("gt_class_maps_only"):
            top1 = top5 = "n/a"
        lines.append(f"| {'Center baseline' if method == 'center' else method} | {cost} | {_fmt(gt_known)} | {_fmt(top1)} | {_fmt(top5)} | {_fmt(wsol.get('wsol_score'))} |")
    scored = next((w.get("scored") for _m, _l, w, n in rows if w), None)
    text = "\n".join(lines) + f"\n\nErrors and {score} in %; {scored} images, model {args.model}, suites {args.suite} and {args.wsol_suite}.\n"
    if args.md is not None:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        old = args.md.read_text() if args.md.is_file() else ""
        if START in old and END in old:  # a document holding the table: replace it between the markers
            text = old[: old.index(START) + len(START)] + "\n" + text + old[old.index(END) :]
        args.md.write_text(text)
        print(f"wrote {args.md}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
