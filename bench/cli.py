"""Command line: argument parsing only; each sub-command calls one function elsewhere.

    bench list
    bench run --suite SUITE [--model NAME ...] [--data DIR] [--limit N] [--device cpu|cuda|auto]
              [--batch-size B] [--workers W] [--out DIR] [--weights FILE] [--gt-layout L] [--images DIR]
    bench table --paper 1|2|3 [--runs DIR ...] [--format csv|latex|md] [--out FILE] [--with-paper]
    bench compare gap gmp [--runs DIR ...] [--suite S] [--format ...]   (or two run folders)
    bench show RUN [RUN2] [--images ID ...|--worst N|--best N|--random N] [--seed S] [--out DIR]
    bench report RUN ... [--out report.html] [--gallery N] [--curve-limit N] [--assets DIR]
    bench convert caffe DEPLOY.prototxt X.caffemodel --out NET.pt [--paper-name ROW]
    bench tencrop [--suite ilsvrc_loc_release_tencrop] --model caffe:NET.pt --data DIR [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_RESULTS = Path("results")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="WSOL benchmark harness (CAM, ILSVRC protocol)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list suites and models")

    run = sub.add_parser("run", help="evaluate models on a suite")
    run.add_argument("--suite", required=True, help="suite name (protocols/NAME.toml) or a .toml path")
    run.add_argument("--model", action="append", help="registry name; repeat for several (default: the suite's models)")
    run.add_argument("--data", type=Path, help="ILSVRC-layout data root, DESIGN §3 (default: the suite's data)")
    run.add_argument("--weights", type=Path, action="append", help="weights file, one per --model in order")
    run.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"])
    run.add_argument("--images", type=Path, default=None, help="image folder if not found under --data")
    run.add_argument("--split", default=None, choices=["test", "train-fullsup", "train", "all"],
                     help="split of CUB (test|train|all) or wsol metadata (test|train-fullsup); default test")
    run.add_argument("--metadata", type=Path, default=None, help="wsolevaluation metadata folder if not under --data")
    run.add_argument("--masks", type=Path, default=None, help="folder the wsol mask paths are relative to")
    run.add_argument("--select-on", default=None, choices=["train-fullsup"],
                     help="wsol suites: choose the CAM threshold on this split, report the test split at it")
    run.add_argument("--step", type=float, default=None, help="wsol suites: threshold grid step (default: the suite's)")
    run.add_argument("--limit", type=int, default=None, help="only the first N images (sorted ids)")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--workers", type=int, default=None, help="DataLoader decode workers (default: every core on CUDA, else 2)")
    run.add_argument("--decode", default="auto", choices=["auto", "cpu", "cuda"],
                     help="where JPEGs are decoded and resized (default auto: on the GPU when --device is CUDA)")  # fmt: skip
    run.add_argument("--shard-size", type=int, default=1000, help="images per records shard (resume unit)")
    run.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root; runs go to OUT/SUITE/MODEL")
    run.add_argument("--method", default=None, choices=["cam", "backprop", "gradcam", "gradcampp"],
                     help="localization map (default: the suite's, cam); gradient maps localize any network")
    run.add_argument("--layer", default=None, help="Grad-CAM layer (module path; default: the last conv block)")
    run.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast precision of the forward pass")
    run.add_argument("--channels-last", action="store_true", help="channels-last memory format for the forward pass")
    run.add_argument("--save-cams", action="store_true", help="cache top-k + GT CAMs (float16) for `bench rescore`")
    run.add_argument("--box-workers", type=int, default=None,
                     help="workers for upsampling + boxes, overlapped with the forward (default: one process per core on GPU, inline on CPU; N on CPU = N threads)")
    run.add_argument("--no-progress", action="store_true")

    rescore = sub.add_parser("rescore", help="re-apply a protocol to a run's cached CAMs (no network)")
    rescore.add_argument("run_dir", type=Path, help="a finished run made with --save-cams")
    rescore.add_argument("--protocol", required=True, help="suite name or .toml path")
    rescore.add_argument("--out", type=Path, default=None, help="results root (default: the source run's root); writes OUT/SUITE/MODEL")
    rescore.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")
    rescore.add_argument("--no-progress", action="store_true")

    table = sub.add_parser("table", help="paper-shaped tables from finished runs")
    table.add_argument("--paper", type=int, required=True, choices=[1, 2, 3])
    table.add_argument("--runs", type=Path, nargs="+", default=[DEFAULT_RESULTS])
    table.add_argument("--suite", default=None, help="Tables 1-2: only runs of this suite")
    table.add_argument("--format", default="md", choices=["csv", "latex", "md"])
    table.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    table.add_argument("--with-paper", action="store_true", help="add the paper's published numbers")

    sweep = sub.add_parser("sweep", help="MaxBoxAcc / MaxBoxAccV2 / PxAP threshold sweeps from a run's CAM cache")
    sweep.add_argument("run_dir", type=Path, help="a finished run made with --save-cams")
    sweep.add_argument("--step", type=float, default=0.01, help="threshold grid step (0.001 for 1,000 thresholds)")
    sweep.add_argument("--at", default="224", choices=["224", "original"], help="evaluation size of maps and boxes")
    sweep.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")
    sweep.add_argument("--workers", type=int, default=None,
                       help="processes sweeping the maps (default: all cores for >= 1,000 maps, else 1)")  # fmt: skip
    sweep.add_argument("--no-progress", action="store_true")

    export = sub.add_parser("export", help="export a run's detections")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--coco", action="store_true", required=True, help="COCO JSON + box AP (pycocotools COCOeval)")
    export.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")

    data = sub.add_parser("data", help="write ready-made data sets in ILSVRC layout")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    photos = data_sub.add_parser("photos", help="scikit-image's real photographs with hand-drawn boxes (needs the demo extra)")
    photos.add_argument("--out", type=Path, default=Path("data/photos"))
    synth = data_sub.add_parser("synth", help="the generated localization data set (train + val, ILSVRC layout, masks)")
    synth.add_argument("--out", type=Path, default=None, help="folder (default: the cache dir used by the demo suite)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--classes", type=int, default=6, help="number of object classes (up to 10)")
    synth.add_argument("--size", type=int, default=200, help="train images per class; val gets a quarter as many")

    compare = sub.add_parser("compare", help="compare GAP vs GMP twins (or two run folders)")
    compare.add_argument("a", help="family tag (gap, gmp, fc) or a run folder")
    compare.add_argument("b", help="family tag or a run folder")
    compare.add_argument("--runs", type=Path, nargs="+", default=[DEFAULT_RESULTS])
    compare.add_argument("--suite", default=None)
    compare.add_argument("--format", default="md", choices=["csv", "latex", "md"])
    compare.add_argument("--out", type=Path, default=None)
    show = sub.add_parser("show", help="CAM overlays (PNG) of chosen images of a run, or of two runs side by side")
    show.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="a run folder; a second one is shown side by side")
    pick = show.add_mutually_exclusive_group()
    pick.add_argument("--images", nargs="+", metavar="ID", help="these image ids")
    pick.add_argument("--worst", type=int, metavar="N", help="the N lowest GT-known IoUs (default: 4)")
    pick.add_argument("--best", type=int, metavar="N", help="the N highest GT-known IoUs")
    pick.add_argument("--random", type=int, metavar="N", help="N images drawn with --seed")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--out", type=Path, default=Path("show"), help="folder for the PNGs (default: ./show)")
    show.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run")
    show.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    show.add_argument("--batch-size", type=int, default=16)

    report = sub.add_parser("report", help="one self-contained HTML page: manifests, tables, compare, curves, gallery")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders or folders holding runs")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    report.add_argument("--gallery", type=int, default=3, help="best and worst images per run (0: none)")
    report.add_argument("--curve-limit", type=int, default=None,
                        help="threshold curves on the first N images (default: all with a map cache, else 500: the network is re-run)")
    report.add_argument("--assets", type=Path, default=None, help="also write each curve's CSV and PNG here")
    report.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    report.add_argument("--batch-size", type=int, default=16)

    train = sub.add_parser("train", help="train / fine-tune a registry model from image-level labels (bench.train)")
    train.add_argument("--model", required=True, help="registry name")
    train.add_argument("--data", required=True, help="ImageFolder-style train set (DIR/train/<wnid>/ or DIR/<wnid>/), or 'generated'")
    train.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    train.add_argument("--batch-size", type=int, default=None, help="global batch (split over torchrun ranks); default: recipe")
    train.add_argument("--lr", type=float, default=None, help="base learning rate; default: recipe")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, default=2, help="DataLoader decode workers")
    train.add_argument("--out", type=Path, default=None, help="checkpoint file (default: checkpoints/MODEL.pth); sidecar CKPT.json")
    train.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    train.add_argument("--weights", type=Path, default=None, help="start from this checkpoint instead of the recipe's init")
    train.add_argument("--val", type=Path, default=None, help="val root for the final accuracy (default: auto)")
    train.add_argument("--no-progress", action="store_true")
    tencrop = sub.add_parser("tencrop", help="run a ten-crop release suite (input.pipeline = tencrop_release) with a Caffe model")
    tencrop.add_argument("--suite", default="ilsvrc_loc_release_tencrop", help="suite name or .toml path (default: ilsvrc_loc_release_tencrop)")
    tencrop.add_argument("--model", required=True, help="caffe:NET.pt (bench convert caffe) or DEPLOY.prototxt with --weights")
    tencrop.add_argument("--weights", type=Path, default=None, help="the .caffemodel of a DEPLOY.prototxt model")
    tencrop.add_argument("--data", type=Path, help="ILSVRC-layout data root (holds the suite's mean_image file)")
    tencrop.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"])
    tencrop.add_argument("--images", type=Path, default=None, help="image folder if not found under --data")
    tencrop.add_argument("--limit", type=int, default=None, help="only the first N images (sorted ids)")
    tencrop.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    tencrop.add_argument("--shard-size", type=int, default=1000, help="images per records shard (resume unit)")
    tencrop.add_argument("--box-workers", type=int, default=2, help="threads for boxes + scoring, overlapped with the network (0: inline)")
    tencrop.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root; runs go to OUT/SUITE/MODEL")
    tencrop.add_argument("--no-progress", action="store_true")

    convert = sub.add_parser("convert", help="convert a foreign model file into one the harness loads")
    convert_sub = convert.add_subparsers(dest="convert_command", required=True)
    caffe = convert_sub.add_parser("caffe", help="Caffe deploy/train_val .prototxt + .caffemodel -> NET.pt (needs the caffe extra)")
    caffe.add_argument("deploy", type=Path, help="the network's .prototxt (deploy or train_val; TEST phase)")
    caffe.add_argument("caffemodel", type=Path, help="its trained weights (.caffemodel)")
    caffe.add_argument("--out", type=Path, required=True, help="output file; run it with --model caffe:NET.pt")
    caffe.add_argument("--paper-name", default=None, help="CAM paper row (e.g. VGGnet-GAP); default: guessed from the file names")
    return parser


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


def cmd_list() -> int:
    from bench.models import list_models
    from bench.core.protocol import list_suites, load_protocol

    print("suites:")
    for name, path in list_suites().items():
        print(f"  {name:28s} {load_protocol(path).description}  [{path}]")
    print("models:")
    for spec in list_models():
        grid = f"{spec.grid}x{spec.grid}" if spec.grid else "-"
        print(f"  {spec.name:20s} head={spec.head:3s} input={spec.input_size} cam_grid={grid:6s} {spec.weights_note}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run.engine import RunConfig
    from bench.runtime import resolve_device
    from bench.run.suite import SuiteRequest, run_named_suite

    config = RunConfig(
        device=resolve_device(args.device),
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
        shard_size=args.shard_size,
        progress=not args.no_progress,
        amp=args.amp,
        channels_last=args.channels_last,
        save_cams=args.save_cams,
        box_workers=args.box_workers,
        decode=args.decode,
    )
    request = SuiteRequest(
        suite=args.suite,
        models=args.model or (),
        data=args.data,
        weights=args.weights or (),
        gt_layout=args.gt_layout,
        images=args.images,
        out=args.out,
        method=args.method,
        layer=args.layer,
        split=args.split,
        metadata=args.metadata,
        masks=args.masks,
        select_on=args.select_on,
        step=args.step,
    )
    run_named_suite(request, config)
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from bench.core.protocol import load_protocol
    from bench.run.rescore import rescore_run
    from bench.run.results import RunDir

    source = RunDir(args.run_dir)
    protocol = load_protocol(args.protocol)
    root = args.out if args.out is not None else source.path.parent.parent
    target = RunDir(root / protocol.name / source.path.name)
    if target.path.resolve() == source.path.resolve():
        raise SystemExit("bench rescore: the target is the source run itself; pass another --protocol or --out")
    summary = rescore_run(source, protocol, target, progress=not args.no_progress, data_root=args.data)
    print(f"rescored {source.path} with {protocol.name}: results in {target.path}")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.run.results import RunDir
    from bench.analysis.run_metrics import sweep_run

    result = sweep_run(
        RunDir(args.run_dir), step=args.step, at=args.at, progress=not args.no_progress, data_root=args.data, workers=args.workers
    )
    print(json.dumps({k: v for k, v in result.items()}, indent=2, default=str))
    print(f"wrote {args.run_dir / 'sweep.json'} and {args.run_dir / 'sweep_curves.csv'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.run.results import RunDir
    from bench.analysis.run_metrics import coco_export

    result = coco_export(RunDir(args.run_dir), data_root=args.data)
    print(json.dumps(result, indent=2))
    print(f"wrote {args.run_dir / 'coco.json'} and {args.run_dir / 'coco_eval.json'}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from bench.report.tables import load_runs, paper_table, render, table_caption

    frame = paper_table(load_runs(args.runs), args.paper, with_paper=args.with_paper, suite=args.suite)
    if frame.empty:
        raise SystemExit(f"bench table: no finished runs under {[str(r) for r in args.runs]}; run `bench run` first")
    _emit(render(frame, args.format, caption=table_caption(args.paper)), args.out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.tables import CompareError, compare_families, compare_runs, load_runs, render

    try:
        if Path(args.a).is_dir() and Path(args.b).is_dir():
            (a,), (b,) = load_runs([args.a]), load_runs([args.b])
            frame = compare_runs(a, b)
        else:
            frame = compare_families(load_runs(args.runs), args.a, args.b, suite=args.suite)
    except CompareError as exc:
        raise SystemExit(f"bench compare: {exc}") from None
    _emit(render(frame, args.format), args.out)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "photos":
        from bench.data.photos import write_real_photo_val

        root = write_real_photo_val(args.out)
        print(f"wrote the real-photo val set (VOC XML layout) to {root}; run it with --data {root}")
        return 0
    if args.data_command == "synth":
        from bench.data.synthetic import SynthConfig, ensure_dataset, train_root, val_root

        config = SynthConfig(seed=args.seed, classes=args.classes, train_per_class=args.size, val_per_class=max(1, args.size // 4))
        out = ensure_dataset(config, args.out, progress=True)
        print(f"generated data set in {out}: train {train_root(out)}, val --data {val_root(out)}")
        return 0
    raise AssertionError(args.data_command)  # pragma: no cover


def cmd_show(args: argparse.Namespace) -> int:
    from bench.report.overlays import show

    if len(args.runs) > 2:
        raise SystemExit("bench show: give one run, or two runs to show side by side")
    for flag in ("worst", "best", "random"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"bench show: --{flag} needs N >= 1")
    paths = show(
        args.runs, args.out, images=args.images, worst=args.worst, best=args.best, random=args.random,
        seed=args.seed, device=args.device, data_root=args.data, batch_size=args.batch_size,
    )  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.html import build_report

    path = build_report(
        args.runs, args.out, gallery=args.gallery, curve_limit=args.curve_limit, device=args.device,
        batch_size=args.batch_size, assets_dir=args.assets,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.train import TrainConfig, train

    out = args.out if args.out is not None else Path("checkpoints") / f"{args.model}.pth"
    config = TrainConfig(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, workers=args.workers, out=out, device=args.device, init_weights=args.weights,
        val=args.val, progress=not args.no_progress, argv=tuple(sys.argv),
    )  # fmt: skip
    result = train(config)
    if result.checkpoint is not None:
        info = result.info
        val = "n/a" if info["val_top1"] is None else f"{info['val_top1']:.2f} %"
        print(f"{args.model}: final train loss {info['final_train_loss']:.4f}, val top-1 {val}")
        print(f"wrote {result.checkpoint} and {result.checkpoint}.json")
    return 0


def cmd_tencrop(args: argparse.Namespace) -> int:
    from bench.runtime import resolve_device

    try:
        from bench.models.caffe.tencrop_run import run_tencrop_named
    except ImportError as exc:
        raise SystemExit(f"bench tencrop: {exc}") from None
    run_tencrop_named(
        args.suite, args.model, args.weights, args.data, args.out, gt_layout=args.gt_layout, images=args.images,
        device=resolve_device(args.device), limit=args.limit, shard_size=args.shard_size,
        box_workers=args.box_workers, progress=not args.no_progress,
    )  # fmt: skip
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        from bench.models.caffe import convert_caffe
    except ImportError as exc:
        raise SystemExit(f"bench convert caffe: {exc}") from None

    out = convert_caffe(args.deploy, args.caffemodel, args.out, paper_name=args.paper_name)
    print(f"wrote {out}; evaluate it with --model caffe:{out}")
    return 0


_COMMANDS = {"list": lambda a: cmd_list(), "run": cmd_run, "rescore": cmd_rescore, "sweep": cmd_sweep, "export": cmd_export, "table": cmd_table, "compare": cmd_compare, "data": cmd_data, "show": cmd_show, "report": cmd_report, "train": cmd_train, "convert": cmd_convert, "tencrop": cmd_tencrop}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bench` console script. Expected errors print one clear message, exit 2."""
    from bench.data.dataset import DataError
    from bench.runtime import BenchError
    from bench.models import UnknownModelError, WeightsError
    from bench.core.protocol import ProtocolError
    from bench.run.rescore import RescoreError
    from bench.analysis.run_metrics import RunMetricsError

    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (BenchError, DataError, ProtocolError, WeightsError, UnknownModelError, RescoreError, RunMetricsError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"bench {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
