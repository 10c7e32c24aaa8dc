"""Command line: argument parsing and checking only; each sub-command calls one function elsewhere.

Every argument is checked before any file is written; a bad one ends the command with one line
naming the fix (exit 2). Ctrl-C ends it with one line (exit 130); `bench run` says how many shards
are done and that the same command resumes. The protocol the commands follow is specified in
docs/protocol.md.

    bench list
    bench run --suite SUITE [--model NAME ...] [--data DIR] [--label TEXT ...] [--limit N] ...
    bench score MAPS --data DIR [--suite S] [--out DIR] [--workers N]
    bench table --paper 1|2|3 [--runs DIR ...] [--format csv|latex|md] [--out FILE] [--with-paper]
    bench compare gap gmp [--runs DIR ...] [--suite S] [--format ...]   (or two run folders)
    bench show RUN [RUN2] [--images ID ...|--worst N|--best N|--random N] [--seed S] [--out DIR]
    bench report RUN ... [--out report.html] [--gallery N] [--curve-limit N] [--assets DIR]
    bench convert caffe DEPLOY.prototxt X.caffemodel --out NET.pt [--paper-name ROW]
    bench tencrop [--suite ilsvrc_loc_release_tencrop] --model caffe:NET.pt --data DIR [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # annotations only: the commands import their modules when they run
    from bench.core.protocol import Protocol
    from bench.run.suite import SuiteRun

DEFAULT_RESULTS = Path("results")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give an integer >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _step(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a step between 0 and 1, e.g. 0.01") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1 (exclusive); give e.g. 0.01 (100 thresholds) or 0.001")
    return value


def _fraction(text: str) -> float:
    """A box threshold: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a threshold between 0 and 1, e.g. 0.5") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1); give e.g. 0.5")
    return value


_NATIVE_METHODS = ("cam", "backprop", "gradcam", "gradcampp")


def _method(text: str) -> str:
    """A native method, or LIB:NAME (the library and NAME are checked before the run starts)."""
    from bench.core.library_methods import is_library_method

    if text in _NATIVE_METHODS or is_library_method(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a method; choose one of {', '.join(_NATIVE_METHODS)}, grad-cam:NAME or torchcam:NAME (see `bench list`)")


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def _device(text: str) -> str:
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda, cuda:N or auto")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line: 'bench run: error: argument --limit: ...'."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


POSITIVE = _int_at_least(1)
NON_NEGATIVE = _int_at_least(0)


def _parser() -> argparse.ArgumentParser:
    import bench

    parser = _Parser(
        prog="bench",
        description="WSOL benchmark harness: CAM localization scored with the ILSVRC devkit rule "
        "(the protocol is specified in docs/protocol.md)",
    )
    parser.add_argument("--version", action="version", version=f"wsol-bench {bench.__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def _add_list(sub: Any) -> None:
    sub.add_parser("list", help="list suites and models (and whether each model's weights are available offline)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default shown (when it has one and its text does not already say it);
    the epilog's examples keep their lines."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {default})"


RUN_EXAMPLES = """examples:
  bench run --suite demo                                      # the embedded demo: its nets, its data
  bench run --suite ilsvrc_loc --data ~/ILSVRC/val --model vgg16_gap --limit 50 --device cuda
  bench run --suite demo --model timm/resnet18 --num-classes 6 --weights resnet18_6classes.pth
"""


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="evaluate models on a suite", description="Evaluate models on a suite; each run goes to OUT/SUITE/RUN.",
        epilog=RUN_EXAMPLES, formatter_class=_HelpFormatter,
    )  # fmt: skip
    run.add_argument("--suite", required=True, help="suite name (protocols/NAME.toml) or a .toml path")
    for add, title in _RUN_GROUPS:
        add(run.add_argument_group(title))


def _run_data(group: Any) -> None:
    group.add_argument("--data", type=Path, help="ILSVRC-layout data root, see docs/protocol.md (default: the suite's data)")
    group.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"],
                       help="ground-truth layout: VOC XML, Kaggle CSV, wsolevaluation metadata or CUB (default: detected)")
    group.add_argument("--images", type=Path, default=None, help="image folder if not found under --data")
    group.add_argument("--split", default=None, choices=["test", "train-fullsup", "train", "all"],
                       help="split of CUB (test|train|all) or wsol metadata (test|train-fullsup); default test")
    group.add_argument("--metadata", type=Path, default=None, help="wsolevaluation metadata folder if not under --data")
    group.add_argument("--masks", type=Path, default=None, help="folder the wsol mask paths are relative to")
    group.add_argument("--limit", type=POSITIVE, default=None, metavar="N", help="only the first N images (sorted ids), N >= 1; the run folder gets -limitN")


def _run_model(group: Any) -> None:
    group.add_argument("--model", action="append",
                       help="registry name, timm/NAME, torchvision/NAME, package.module:factory, path/to/file.py:factory or an "
                            "entry-point name; repeat for several (default: the suite's models)")  # fmt: skip
    group.add_argument("--weights", type=Path, action="append", help="weights file, one per --model in order")
    group.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="--no-pretrained: random init, no weights read or downloaded (default: pretrained, as the model defines)")


def _run_own_model(group: Any) -> None:
    group.add_argument("--num-classes", type=POSITIVE, default=None, metavar="N",
                       help="timm/ and torchvision/ models: build the classifier with N outputs (default: the library's, 1000)")
    group.add_argument("--classifier", default=None, help="user models: the last linear layer, by module name (default: traced)")
    group.add_argument("--reshape", default=None, choices=["vit"], help="user models: fold (B, N, C) token features into the patch grid (ViT/DeiT)")
    group.add_argument("--input-size", type=POSITIVE, default=None, help="user models: square input side (default: pretrained_cfg, else 224)")
    group.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="user models: input mean (default: pretrained_cfg, else ImageNet)")
    group.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="user models: input std (default: pretrained_cfg, else ImageNet)")


def _run_method(group: Any) -> None:
    group.add_argument("--method", default=None, type=_method,
                       help="localization map: cam, backprop, gradcam, gradcampp, or a library method grad-cam:NAME / "
                            "torchcam:NAME (see `bench list`; default: the suite's, cam); gradient maps localize any network")  # fmt: skip
    group.add_argument("--layer", default=None,
                       help="registry models: Grad-CAM layer (module path; default: the last conv block); other models: the "
                            "module whose output is the feature map (default: traced, the input of the global pooling)")  # fmt: skip
    group.add_argument("--select-on", default=None, choices=["train-fullsup", "test"],
                       help="choose the threshold on this split and report the test split at it: tau of wsol_* suites, the box threshold of top5 suites (e.g. cub_loc); "
                            "'test' (crop suites only): the best threshold on the reported split itself, labelled optimistic")  # fmt: skip
    group.add_argument("--box-threshold", type=_fraction, default=None,
                       help="box threshold of top5 suites, 0 <= t < 1 (crop suites: tau on the min-max map; default per backbone, docs/protocol.md)")
    group.add_argument("--step", type=_step, default=None, help="wsol_* suites: threshold grid step, 0 < step < 1 (default: the suite's)")
    group.add_argument("--extra-metrics", action="store_true", help="also score the GT-class maps with the saliency scores (pointing game, energy pointing game, Quantus localisation): saliency.csv.gz and saliency.json in each run folder")
    group.add_argument("--difficult-flags", type=Path, default=None, help="pointing_*_difficult suites: the EBP difficult-subset flag list (default: the one the torchray package ships)")


def _run_speed(group: Any) -> None:
    group.add_argument("--device", type=_device, default="auto", help="cpu, cuda, cuda:N or auto")
    group.add_argument("--batch-size", type=POSITIVE, default=32, help="images per forward pass")
    group.add_argument("--workers", type=NON_NEGATIVE, default=None,
                       help="DataLoader decode workers (0: decode in the main process; default: every core on CUDA, else 2)")
    group.add_argument("--decode", default="auto", choices=["auto", "cpu", "cuda"],
                       help="where JPEGs are decoded and resized (default auto: on the GPU when --device is CUDA)")  # fmt: skip
    group.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast precision of the forward pass")
    group.add_argument("--channels-last", action="store_true", help="channels-last memory format for the forward pass")
    group.add_argument("--box-workers", type=NON_NEGATIVE, default=None,
                       help="workers for upsampling + boxes, overlapped with the forward "
                            "(default: one process per core on GPU, inline on CPU; N on CPU = N threads)")  # fmt: skip


def _run_output(group: Any) -> None:
    group.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root; runs go to OUT/SUITE/RUN")
    group.add_argument("--label", action="append",
                       help="the run's name in tables and comparisons and its folder, one per --model in order (default: the model, "
                            "plus weights or folder when two runs share it)")  # fmt: skip
    group.add_argument("--shard-size", type=POSITIVE, default=1000, help="images per records shard (resume unit)")
    group.add_argument("--save-cams", action="store_true", help="cache top-k + GT CAMs (float32, lossless) for `bench rescore` and `bench sweep`; results are unchanged")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


#: `bench run --help`'s option groups, in order; an option is added to its group's function
_RUN_GROUPS: list[tuple[Callable[[Any], None], str]] = [
    (_run_data, "data"),
    (_run_model, "model"),
    (_run_own_model, "your own model (timm/, torchvision/, module:factory, file.py:factory, entry points)"),
    (_run_method, "method"),
    (_run_speed, "speed"),
    (_run_output, "output"),
]


def _add_score(sub: Any) -> None:
    score = sub.add_parser("score", help="score localization maps saved elsewhere (.npy GT-class maps or .npz ranked maps) into a run")
    score.add_argument("maps", type=Path, metavar="MAPS", help="folder of maps, one file per image (see README: Score saved maps)")
    score.add_argument("--data", type=Path, default=None, help="ILSVRC-layout data root the maps were made on (default: the suite's data, as for bench run)")
    score.add_argument("--suite", default="ilsvrc_loc", help="suite name or .toml path (default: ilsvrc_loc)")
    score.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root; the run goes to OUT/SUITE/maps-<folder name>")
    score.add_argument("--name", default=None, help="run name (default: maps-<folder name>)")
    score.add_argument("--workers", type=NON_NEGATIVE, default=0, help="processes for reading and scoring maps (default: inline)")
    score.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"],
                       help="ground-truth layout: VOC XML, Kaggle CSV, wsolevaluation metadata or CUB (default: detected)")
    score.add_argument("--split", default=None, choices=["test", "train-fullsup", "train", "all"], help="as for bench run")
    score.add_argument("--metadata", type=Path, default=None, help="wsolevaluation metadata folder if not under --data")
    score.add_argument("--masks", type=Path, default=None, help="folder the wsol mask paths are relative to")
    score.add_argument("--images", type=Path, default=None, help="image folder if not found under --data")
    score.add_argument("--box-threshold", type=_fraction, default=None,
                       help="box threshold of top5 suites, 0 <= t < 1 (crop suites: tau on the min-max map; default the suite's)")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_rescore(sub: Any) -> None:
    rescore = sub.add_parser("rescore", help="re-apply a protocol to a run's cached CAMs (no network)")
    rescore.add_argument("run_dir", type=Path, help="a finished run made with --save-cams")
    rescore.add_argument("--protocol", required=True, help="suite name or .toml path")
    rescore.add_argument("--out", type=Path, default=None, help="results root (default: the source run's root); writes OUT/SUITE/MODEL")
    rescore.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")
    rescore.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_table(sub: Any) -> None:
    table = sub.add_parser("table", help="paper-shaped tables from finished runs")
    shape = table.add_mutually_exclusive_group(required=True)
    shape.add_argument("--paper", type=int, choices=[1, 2, 3], help="which of the CAM paper's tables: 1 classification, 2 localization, 3 tight/loose")
    shape.add_argument("--wsol", action="store_true", help="wsolevaluation's table: MaxBoxAccV2 on ILSVRC and CUB, PxAP on OpenImages (wsol_* suite runs)")
    shape.add_argument("--pointing", action="store_true", help="TorchRay's pointing-game table: VOC07 / COCO14, all / difficult (pointing_* suite runs); --with-torchray adds its published rows")
    table.add_argument("--runs", type=Path, nargs="+", default=[DEFAULT_RESULTS], help="run folders or folders holding runs (default: results)")
    table.add_argument("--suite", default=None, help="Tables 1-2: only runs of this suite")
    table.add_argument("--format", default="md", choices=["csv", "latex", "md"], help="md (default), latex (booktabs table* with caption) or csv (raw identifiers)")
    table.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")
    table.add_argument("--with-paper", action="store_true", help="add the paper's published rows as baselines, marked (paper)")
    table.add_argument("--with-torchray", action="store_true", help="--pointing: add TorchRay's published rows as baselines, marked (TorchRay)")


def _add_sweep(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="MaxBoxAcc / MaxBoxAccV2 / PxAP threshold sweeps from a run's CAM cache")
    sweep.add_argument("run_dir", type=Path, help="a finished run made with --save-cams")
    sweep.add_argument("--step", type=_step, default=0.01, help="threshold grid step, 0 < step < 1 (0.001 for 1,000 thresholds)")
    sweep.add_argument("--at", default="224", choices=["224", "original"], help="evaluation size of maps and boxes")
    sweep.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")
    sweep.add_argument("--workers", type=POSITIVE, default=None,
                       help="processes sweeping the maps (default: all cores for >= 1,000 maps, else 1)")  # fmt: skip
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_export(sub: Any) -> None:
    export = sub.add_parser("export", help="export a run's detections")
    export.add_argument("run_dir", type=Path, help="a finished run folder (OUT/SUITE/MODEL)")
    export.add_argument("--coco", action="store_true", required=True, help="COCO JSON + box AP (pycocotools COCOeval)")
    export.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run (GT fingerprint checked)")


def _add_data(sub: Any) -> None:
    data = sub.add_parser("data", help="write ready-made data sets in ILSVRC layout")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    photos = data_sub.add_parser("photos", help="scikit-image's real photographs with hand-drawn boxes (needs the demo extra)")
    photos.add_argument("--out", type=Path, default=Path("data/photos"), help="folder to write (default: data/photos)")
    synth = data_sub.add_parser("synth", help="the generated localization data set (train + val, ILSVRC layout, masks)")
    synth.add_argument("--out", type=Path, default=None, help="folder (default: the cache dir used by the demo suite)")
    synth.add_argument("--seed", type=int, default=0, help="random seed of the generator (default 0: the demo's data)")
    synth.add_argument("--classes", type=POSITIVE, default=6, help="number of object classes (up to 10)")
    synth.add_argument("--size", type=POSITIVE, default=200, help="train images per class; val gets a quarter as many")


def _add_compare(sub: Any) -> None:
    compare = sub.add_parser("compare", help="compare GAP vs GMP twins (or two run folders); the delta is B - A")
    compare.add_argument("a", help="family tag (gap, gmp, fc) or a run folder")
    compare.add_argument("b", help="family tag or a run folder")
    compare.add_argument("--runs", type=Path, nargs="+", default=[DEFAULT_RESULTS], help="where to look for family twins (default: results)")
    compare.add_argument("--suite", default=None, help="only pairs of this suite")
    compare.add_argument("--format", default="md", choices=["csv", "latex", "md"], help="md (default), latex or csv")
    compare.add_argument("--out", type=Path, default=None, help="write to FILE instead of stdout")


def _add_show(sub: Any) -> None:
    show = sub.add_parser("show", help="CAM overlays (PNG) of chosen images of a run, or of two runs side by side")
    show.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="a run folder; a second one is shown side by side")
    pick = show.add_mutually_exclusive_group()
    pick.add_argument("--images", nargs="+", metavar="ID", help="these image ids")
    pick.add_argument("--worst", type=int, metavar="N", help="the N lowest GT-known IoUs (default: 4)")
    pick.add_argument("--best", type=int, metavar="N", help="the N highest GT-known IoUs")
    pick.add_argument("--random", type=int, metavar="N", help="N images drawn with --seed")
    show.add_argument("--seed", type=int, default=0, help="seed of --random")
    show.add_argument("--out", type=Path, default=Path("show"), help="root for the PNGs, written to OUT/SUITE/RUN/ (default: ./show)")
    show.add_argument("--data", type=Path, default=None, help="the data root if it moved since the run")
    show.add_argument("--device", type=_device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    show.add_argument("--batch-size", type=POSITIVE, default=16, help="images per forward pass")


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="one self-contained HTML page: manifests, tables, compare, curves, gallery")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders or folders holding runs")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file (default: report.html)")
    report.add_argument("--gallery", type=NON_NEGATIVE, default=3, help="best and worst images per run (0: none)")
    report.add_argument("--curve-limit", type=POSITIVE, default=None,
                        help="threshold curves on the first N images (default: all with a map cache, else 500: the network is re-run)")
    report.add_argument("--assets", type=Path, default=None, help="also write each curve's CSV and PNG here")
    report.add_argument("--device", type=_device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    report.add_argument("--batch-size", type=POSITIVE, default=16, help="images per forward pass")


def _add_train(sub: Any) -> None:
    train = sub.add_parser("train", help="train / fine-tune a model from image-level labels (bench.train)")
    train.add_argument("--model", required=True, help="any model bench run takes: registry name, timm/NAME, torchvision/NAME, package.module:factory, path/to/file.py:factory")
    train.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="models outside the registry: --no-pretrained starts from a random init (default: their own weights)")
    train.add_argument("--num-classes", type=POSITIVE, default=None, metavar="N", help="timm/ and torchvision/ models: N outputs (default: the library's, 1000)")
    train.add_argument("--data", required=True, help="ImageFolder-style train set (DIR/train/<wnid>/ or DIR/<wnid>/), or 'generated'")
    train.add_argument("--epochs", type=POSITIVE, default=None, help="default: the model's recipe")
    train.add_argument("--batch-size", type=POSITIVE, default=None, help="global batch (split over torchrun ranks); default: recipe")
    train.add_argument("--lr", type=float, default=None, help="base learning rate; default: recipe")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation, order and flips")
    train.add_argument("--workers", type=NON_NEGATIVE, default=2, help="DataLoader decode workers")
    train.add_argument("--out", type=Path, default=None, help="checkpoint file (default: checkpoints/MODEL.pth); sidecar CKPT.json")
    train.add_argument("--device", type=_device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    train.add_argument("--weights", type=Path, default=None, help="start from this checkpoint instead of the recipe's init")
    train.add_argument("--val", type=Path, default=None, help="val root for the final accuracy (default: auto)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_tencrop(sub: Any) -> None:
    tencrop = sub.add_parser("tencrop", help="run a ten-crop release suite (input.pipeline = tencrop_release) with a Caffe model")
    tencrop.add_argument("--suite", default="ilsvrc_loc_release_tencrop", help="suite name or .toml path (default: ilsvrc_loc_release_tencrop)")
    tencrop.add_argument("--model", required=True, help="caffe:NET.pt (bench convert caffe) or DEPLOY.prototxt with --weights")
    tencrop.add_argument("--weights", type=Path, default=None, help="the .caffemodel of a DEPLOY.prototxt model")
    tencrop.add_argument("--data", type=Path, help="ILSVRC-layout data root (holds the suite's mean_image file)")
    tencrop.add_argument("--gt-layout", default="auto", choices=["auto", "voc", "csv", "wsol", "cub"], help="ground-truth layout (default: detected)")
    tencrop.add_argument("--images", type=Path, default=None, help="image folder if not found under --data")
    tencrop.add_argument("--limit", type=POSITIVE, default=None, help="only the first N images (sorted ids), N >= 1")
    tencrop.add_argument("--device", type=_device, default="auto", help="cpu, cuda, cuda:N or auto (default)")
    tencrop.add_argument("--shard-size", type=POSITIVE, default=1000, help="images per records shard (resume unit)")
    tencrop.add_argument("--box-workers", type=NON_NEGATIVE, default=2, help="threads for boxes + scoring, overlapped with the network (0: inline)")
    tencrop.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results root; runs go to OUT/SUITE/MODEL")
    tencrop.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_convert(sub: Any) -> None:
    convert = sub.add_parser("convert", help="convert a foreign model file into one the harness loads")
    convert_sub = convert.add_subparsers(dest="convert_command", required=True)
    caffe = convert_sub.add_parser("caffe", help="Caffe deploy/train_val .prototxt + .caffemodel -> NET.pt (needs the caffe extra)")
    caffe.add_argument("deploy", type=Path, help="the network's .prototxt (deploy or train_val; TEST phase)")
    caffe.add_argument("caffemodel", type=Path, help="its trained weights (.caffemodel)")
    caffe.add_argument("--out", type=Path, required=True, help="output file; run it with --model caffe:NET.pt")
    caffe.add_argument("--paper-name", default=None, help="CAM paper row (e.g. VGGnet-GAP); default: guessed from the file names")


#: one function per sub-command, in the order `bench --help` lists them
_SUBCOMMANDS: list[Callable[[Any], None]] = [_add_list, _add_run, _add_score, _add_rescore, _add_table, _add_sweep, _add_export, _add_data, _add_compare, _add_show, _add_report, _add_train, _add_tencrop, _add_convert]



def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


class UsageError(ValueError):
    """A bad argument found after parsing (one line naming the fix)."""


def _check_device(name: str) -> str:
    """'auto'/'cpu'/'cuda[:N]'/'mps' -> a device torch has here, else a UsageError naming what to use."""
    import torch

    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError("--device mps: torch sees no Apple MPS device on this machine; use --device cpu (or cuda on a GPU machine)")
        return name
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: torch sees no CUDA device on this machine; use --device cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return name
    return "cuda" if name == "auto" and torch.cuda.is_available() else "cpu"


def _run_dir(path: Path, command: str) -> Path:
    """``path`` must be one run's folder (it holds manifest.json); a suite or results folder is refused
    with the runs it holds."""
    if (path / "manifest.json").is_file():
        return path
    if not path.exists():
        raise UsageError(f"{path} does not exist; pass a run folder (OUT/SUITE/MODEL, e.g. results/demo/simplecnn_gap)")
    from bench.run.results import find_runs

    inside = [r.path for r in find_runs([path])] if path.is_dir() else []
    if inside:
        shown = ", ".join(str(p) for p in inside[:3]) + (" ..." if len(inside) > 3 else "")
        held = f"holds {len(inside)} runs, not one" if len(inside) > 1 else "holds a run in a subfolder but is not one itself"
        raise UsageError(f"{path} {held}: pass a run folder, e.g. `bench {command} {inside[0]}` ({shown})")
    raise UsageError(f"{path} is not a run folder (no manifest.json); pass a folder written by `bench run` (OUT/SUITE/MODEL)")


def cmd_list() -> int:
    from bench.core.protocol import list_suites, load_protocol
    from bench.models import list_models, offline_weights

    print("suites:")
    for name, path in list_suites().items():
        print(f"  {name:28s} {load_protocol(path).description}  [{path}]")
    print("models (offline: weights usable without a download; else where they come from):")
    from bench.extras import extra_installed, install_hint, needed_extras

    for spec in list_models():
        grid = f"{spec.grid}x{spec.grid}" if spec.grid else "-"
        missing = [e for e in needed_extras(models=[spec.name]) if not extra_installed(e)]
        offline = "offline: yes" if not missing and offline_weights(spec.name) else "offline: no "
        note = f"needs the optional extra '{missing[0]}': {install_hint(missing[0])}" if missing else spec.weights_note
        print(f"  {spec.name:20s} head={spec.head:3s} input={spec.input_size} cam_grid={grid:6s} {offline}  {note}")
    from bench.models.resolve import ENTRY_POINT_GROUP, entry_point_models

    plugins = entry_point_models()
    print(f"models from installed packages (entry points {ENTRY_POINT_GROUP}):" + ("" if plugins else " none"))
    for name, ep in sorted(plugins.items()):
        print(f"  {name:20s} {ep.value}")
    print("also: timm/NAME, torchvision/NAME, package.module:factory, path/to/file.py:factory")
    print("  center               model-free centre baseline (isotropic Gaussian; GT-class maps only, no top-k)")
    _list_methods()
    return 0


def _list_methods() -> None:
    """`bench list`: the map methods, the library ones with their extra and cost (passes per image and class)."""
    from bench.core.library_methods import LIBRARIES, MANY_PASSES, RANDOM_METHODS, available_methods, method_cost

    print(f"map methods (--method): {', '.join(_NATIVE_METHODS)} (native, exact)")
    print("  slow methods forward the network once per channel of the layer: on EfficientNet-Lite0's default layer"
          " (K = 1,280) ScoreCAM makes 1,281 forwards per map")
    for prefix, library in LIBRARIES.items():
        names = available_methods(prefix)
        if not names:
            print(f"  {prefix}:NAME  not installed: pip install 'wsol-bench[{library.extra}]'")
            continue
        print(f"  {prefix}:NAME  ({library.package}; cost per image and class, K = the layer's channels)")
        for name in names:
            method = f"{prefix}:{name}"
            flags = (" [slow: one forward per channel]" if method in MANY_PASSES else "") + (" [random: seeded]" if method in RANDOM_METHODS else "")
            print(f"    {method:28s} {method_cost(method)}{flags}")


def cmd_run(args: argparse.Namespace) -> int:
    from bench.models.resolve import ModelOptions
    from bench.run.engine import RunConfig
    from bench.workflow import run_requested_suite
    from bench.run.suite import SuiteRequest

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder for the results")
    config = RunConfig(
        device=_check_device(args.device),
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
        model_options=ModelOptions(
            classifier=args.classifier, reshape=args.reshape, input_size=args.input_size, mean=args.mean, std=args.std,
            pretrained=args.pretrained is not False, num_classes=args.num_classes,
        ),
        labels=args.label or (),
        split=args.split,
        metadata=args.metadata,
        masks=args.masks,
        select_on=args.select_on,
        step=args.step,
        box_threshold=args.box_threshold,
    )
    runs = run_requested_suite(request, config, extra_metrics=args.extra_metrics, difficult_flags=args.difficult_flags,
                               on_run=_print_suite_run, on_tables=lambda protocol, written: _print_suite_tables(protocol, args.out, written))  # fmt: skip
    if args.extra_metrics:
        for run in runs:
            s = json.loads((run.path / "saliency.json").read_text())
            print(f"{run.path}: pointing accuracy {100 * s['pointing_accuracy']:.1f} %, energy pointing game {s['energy_pointing_game']:.3f} (saliency.json)")
    return 0


def _print_suite_run(done: SuiteRun) -> None:
    """`bench run`'s report of one run: the box threshold chosen, the summary table, the wsol sweep."""
    if done.summary is None:  # ranks > 0 under torchrun: rank 0 reports
        return
    if done.choice is not None and "box_threshold_top1_loc_acc_on_split" in done.choice:  # chosen by --select-on
        choice = done.choice
        print(f"{done.name} on {done.protocol.name}: box threshold {choice['box_threshold']:.2f} chosen on {choice['box_threshold_chosen_on']} "
              f"(top-1 loc. acc. {choice['box_threshold_top1_loc_acc_on_split']:.2f} % there)")  # fmt: skip
    import pandas as pd

    from bench.report.tables import render

    keys = ["top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err", "mean_iou"]
    state = "already complete, nothing recomputed" if done.already else "done"
    title = (
        f"{done.name} on {done.protocol.name} ({state}): {done.summary.get('scored')} images scored, {done.summary.get('failed')} failed"
        f" — errors in %, mean IoU 0–1; results in {done.run.path}"
    )
    print(render(pd.DataFrame([{k: done.summary.get(k) for k in keys}]), "md", title=title))
    if done.wsol is not None:
        from bench.report.tables import wsol_result_frame, wsol_result_title

        print(render(wsol_result_frame(done.wsol), "md", title=wsol_result_title(done.name, done.protocol.name, done.wsol, str(done.run.path))))


def _print_suite_tables(protocol: Protocol, out: Path, written: list[Path]) -> None:
    """After the runs (rank 0): the suite's table files written, and Table 2 of the runs under ``out``."""
    from bench.report.tables import load_runs, paper_table, render, table_title

    for path in written:
        print(f"wrote {path}")
    print()
    print(render(paper_table(load_runs([out]), 2, suite=protocol.name), "md", title=table_title(2)))


def cmd_score(args: argparse.Namespace) -> int:
    from bench.core.protocol import load_protocol
    from bench.run.score import score_folder, score_run_dir
    from bench.run.suite import resolve_data

    protocol = load_protocol(args.suite)
    data = args.data if args.data is not None else resolve_data(protocol, None)
    target = score_run_dir(args.maps, protocol, args.out, args.name)
    already = target.is_complete() and "finished" in target.read_manifest()
    run = score_folder(
        args.maps, data, args.suite, args.out, name=args.name, gt_layout=args.gt_layout, images=args.images,
        split=args.split, metadata=args.metadata, masks=args.masks, workers=args.workers, progress=not args.no_progress, command=sys.argv,
        box_threshold=args.box_threshold,
    )  # fmt: skip
    state = " (already complete, nothing recomputed)" if already else ""
    summary, suite = run.read_summary(), run.read_manifest()["protocol"]["protocol"]["name"]
    unmatched = summary.get("unmatched_maps", 0)
    counts = f"{summary.get('scored')} images scored, {summary.get('failed')} failed, {unmatched} map file{'' if unmatched == 1 else 's'} matched no image"
    print(_summary_table(f"{run.path.name} ({args.maps}) on {suite}{state}: {counts} — errors in %, mean IoU 0–1; results in {run.path}", summary))
    if (run.path / "sweep.json").is_file():  # wsol_* suites: wsolevaluation's sweep of the maps
        import json

        from bench.report.tables import render, wsol_result_frame, wsol_result_title

        sweep = json.loads((run.path / "sweep.json").read_text())
        print(render(wsol_result_frame(sweep), "md", title=wsol_result_title(run.path.name, suite, sweep, str(run.path))))
    return 0


def _summary_table(title: str, summary: dict) -> str:
    import pandas as pd

    from bench.report.tables import COMPARE_METRICS, render

    return render(pd.DataFrame([{k: summary.get(k) for k in COMPARE_METRICS[:6]}]), "md", title=title)


def cmd_rescore(args: argparse.Namespace) -> int:
    from bench.core.protocol import load_protocol
    from bench.run.rescore import rescore_run
    from bench.run.results import RunDir

    source = RunDir(_run_dir(args.run_dir, "rescore"))
    protocol = load_protocol(args.protocol)
    root = args.out if args.out is not None else source.path.parent.parent
    target = RunDir(root / protocol.name / source.path.name)
    if target.path.resolve() == source.path.resolve():
        raise UsageError("the target is the source run itself; pass another --protocol or --out")
    if target.exists():
        held = target.read_manifest()
        if held.get("rescored_from") != str(source.path):
            raise UsageError(
                f"{target.path} already holds another run ({held.get('model', {}).get('name')} on "
                f"{held.get('protocol', {}).get('protocol', {}).get('name')}, "
                + (f"rescored from {held['rescored_from']}" if held.get("rescored_from") else "made by `bench run`")
                + "); pass --out to write the rescored run elsewhere"
            )
        if target.is_complete():
            print(f"{target.path}: already complete (rescored from {source.path}); nothing recomputed")
            return 0
    summary = rescore_run(source, protocol, target, progress=not args.no_progress, data_root=args.data)
    print(_summary_table(f"{source.path.name} rescored with {protocol.name} — errors in %, mean IoU 0–1; results in {target.path}", summary))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.analysis.run_metrics import sweep_run
    from bench.report.tables import render
    from bench.run.results import RunDir

    run_dir = _run_dir(args.run_dir, "sweep")
    result = sweep_run(
        RunDir(run_dir), step=args.step, at=args.at, progress=not args.no_progress, data_root=args.data, workers=args.workers
    )
    scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    frame = pd.DataFrame([{"quantity": k, "value": v} for k, v in scalars.items()])
    print(render(frame, "md", title=f"Threshold sweep of {run_dir} (step {args.step}, maps at {args.at})"))
    print(f"wrote {run_dir / 'sweep.json'} and {run_dir / 'sweep_curves.csv'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.analysis.run_metrics import coco_export
    from bench.report.tables import render
    from bench.run.results import RunDir

    run_dir = _run_dir(args.run_dir, "export")
    result = coco_export(RunDir(run_dir), data_root=args.data)
    scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    frame = pd.DataFrame([{"quantity": k, "value": v} for k, v in scalars.items()])
    print(render(frame, "md", title=f"COCO box AP of {run_dir} (pycocotools COCOeval, 0–1 scale)"))
    print(f"wrote {run_dir / 'coco.json'} and {run_dir / 'coco_eval.json'}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from bench.report.tables import load_runs, paper_table, render, table_caption, table_title, wsol_caption, wsol_table

    if args.pointing:
        from bench.report.pointing_table import pointing_caption, pointing_table

        frame = pointing_table(args.runs, with_torchray=args.with_torchray)
        if not (frame["source"] == "run").any() and not args.with_torchray:
            raise UsageError(f"no finished pointing_* suite runs under {[str(r) for r in args.runs]}; run e.g. `bench run --suite pointing_voc07` first")
        _emit(render(frame, args.format, caption=pointing_caption(), title=pointing_caption()), args.out)
        return 0
    if args.wsol:
        frame = wsol_table(load_runs(args.runs))
        if frame.empty:
            raise UsageError(f"no finished wsol_* suite runs under {[str(r) for r in args.runs]}; run e.g. `bench run --suite wsol_cub` first")
        caption = wsol_caption(frame)
        _emit(render(frame, args.format, caption=caption, title=caption), args.out)
        return 0
    runs = load_runs(args.runs)
    frame = paper_table(runs, args.paper, with_paper=args.with_paper, suite=args.suite)
    if not (frame["source"] == "run").any():
        raise UsageError(f"no finished runs under {[str(r) for r in args.runs]}; run `bench run` first")
    shown = [r for r in runs if r.path in set(_table_run_paths(runs, frame))]
    if args.with_paper and shown and not any(r.n_classes == 1000 for r in shown):
        raise UsageError(
            f"--with-paper: the paper's rows are ImageNet (1,000-class ILSVRC) numbers, and these runs are on other data "
            f"({', '.join(sorted({f'{r.suite}, {r.n_classes} classes' for r in shown}))}); drop --with-paper"
        )
    caption, title = table_caption(args.paper, args.with_paper), table_title(args.paper, args.with_paper)
    _emit(render(frame, args.format, caption=caption, title=title), args.out)
    return 0


def _table_run_paths(runs: Sequence[Any], frame: Any) -> list[Path]:
    """The folders of the runs that are rows of a paper table (matched by label and suite)."""
    rows = set(zip(frame["label"], frame["suite"]))
    return [r.path for r in runs if ((r.label or r.base_label), r.suite) in rows]


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.tables import CompareError, assign_labels, compare_families, compare_runs, load_runs, render

    try:
        if Path(args.a).is_dir() and Path(args.b).is_dir():
            path_a, path_b = _run_dir(Path(args.a), "compare"), _run_dir(Path(args.b), "compare")
            if path_a.resolve() == path_b.resolve():
                raise UsageError(f"A and B are the same run ({path_a}); compare two different runs")
            (a,), (b,) = load_runs([path_a]), load_runs([path_b])
            a, b = assign_labels([a, b], per_suite=False)
            frame = compare_runs(a, b)
            title = "Comparison of two runs."
        else:
            frame = compare_families(load_runs(args.runs), args.a, args.b, suite=args.suite)
            title = f"Comparison of {args.b} against {args.a} twins."
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    # the renderer's note says once which runs A and B are and that the delta is B − A
    _emit(render(frame, args.format, caption=title, title=title), args.out)
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


def show_folder(out: Path, runs: Sequence[Path]) -> Path:
    """Where `bench show` writes: ``OUT/<suite>/<run>/`` for one run, ``OUT/<suiteA>/<runA>__vs__<suiteB>-<runB>/``
    for two, so overlays of different runs never replace each other."""
    from bench.run.results import RunDir

    suites = [RunDir(r).read_manifest()["protocol"]["protocol"]["name"] for r in runs]
    if len(runs) == 1:
        return out / suites[0] / Path(runs[0]).name
    return out / suites[0] / f"{Path(runs[0]).name}__vs__{suites[1]}-{Path(runs[1]).name}"


def cmd_show(args: argparse.Namespace) -> int:
    from bench.report.overlays import show

    if len(args.runs) > 2:
        raise UsageError("give one run, or two runs to show side by side")
    for flag in ("worst", "best", "random"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag} needs N >= 1")
    runs = [_run_dir(r, "show") for r in args.runs]
    device = _check_device(args.device)
    paths = show(
        runs, show_folder(args.out, runs), images=args.images, worst=args.worst, best=args.best, random=args.random,
        seed=args.seed, device=device, data_root=args.data, batch_size=args.batch_size,
    )  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.html import build_report

    path = build_report(
        args.runs, args.out, gallery=args.gallery, curve_limit=args.curve_limit, device=_check_device(args.device),
        batch_size=args.batch_size, assets_dir=args.assets,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bench.train import TrainConfig, train

    _check_device(args.device)  # refuse a device torch does not have here, before anything starts
    out = args.out if args.out is not None else Path("checkpoints") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', args.model)}.pth"
    config = TrainConfig(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, workers=args.workers, out=out, device=args.device, init_weights=args.weights,
        val=args.val, progress=not args.no_progress, argv=tuple(sys.argv), pretrained=args.pretrained is not False,
        num_classes=args.num_classes,
    )  # fmt: skip
    result = train(config)
    if result.checkpoint is not None:
        info = result.info
        val = "n/a" if info["val_top1"] is None else f"{info['val_top1']:.2f} %"
        print(f"{args.model}: final train loss {info['final_train_loss']:.4f}, val top-1 {val}")
        print(f"wrote {result.checkpoint} and {result.checkpoint}.json")
    return 0


def cmd_tencrop(args: argparse.Namespace) -> int:
    try:
        from bench.run.tencrop import run_tencrop_named
    except ImportError as exc:
        raise SystemExit(f"bench tencrop: {exc}") from None
    run_tencrop_named(
        args.suite, args.model, args.weights, args.data, args.out, gt_layout=args.gt_layout, images=args.images,
        device=_check_device(args.device), limit=args.limit, shard_size=args.shard_size,
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


_COMMANDS = {"list": lambda a: cmd_list(), "run": cmd_run, "score": cmd_score, "rescore": cmd_rescore, "sweep": cmd_sweep, "export": cmd_export, "table": cmd_table, "compare": cmd_compare, "data": cmd_data, "show": cmd_show, "report": cmd_report, "train": cmd_train, "convert": cmd_convert, "tencrop": cmd_tencrop}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bench` console script. Expected errors print one clear line and exit 2;
    Ctrl-C exits 130; a closed output pipe (``bench list | head -1``) ends quietly."""
    from bench.analysis.run_metrics import RunMetricsError
    from bench.core.protocol import ProtocolError
    from bench.data.dataset import DataError
    from bench.models import UnknownModelError, WeightsError
    from bench.run.rescore import RescoreError
    from bench.run.suite import RunInterrupted
    from bench.runtime import BenchError

    args = _parser().parse_args(argv)
    prefix = f"bench {args.command}"
    try:
        with _quiet_interrupt():
            return _COMMANDS[args.command](args)
    except (RunInterrupted, KeyboardInterrupt) as exc:
        message = str(exc) if isinstance(exc, RunInterrupted) else "interrupted; nothing was left half-written"
        print(f"\n{prefix}: {message}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head -1`): stop writing, and do not complain at exit either
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except ImportError as exc:
        print(f"{prefix}: error: {_import_error_line(exc)}", file=sys.stderr)
        return 2
    except (UsageError, BenchError, DataError, ProtocolError, WeightsError, UnknownModelError, RescoreError, RunMetricsError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{prefix}: error: {message}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _quiet_interrupt() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual, and from then on the tracebacks other threads would
    print while the command unwinds (e.g. multiprocessing's fd-sharing thread when the DataLoader
    workers go) are dropped, so the command's one line is all that is printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()
    previous_handler = signal.getsignal(signal.SIGINT)
    previous_hook, previous_thread_hook = sys.excepthook, threading.excepthook

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def hook(*exc: object) -> None:
        if not interrupted.is_set():
            previous_hook(*exc)  # type: ignore[arg-type]

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if not interrupted.is_set():
            previous_thread_hook(args)

    signal.signal(signal.SIGINT, on_sigint)
    sys.excepthook, threading.excepthook = hook, thread_hook
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.excepthook, threading.excepthook = previous_hook, previous_thread_hook


def _import_error_line(exc: ImportError) -> str:
    """One line for an ImportError that reached the CLI: a MissingExtra says it all; else the module
    and the extra that installs it (bench.extras), or the package to install."""
    from bench.extras import extra_of_module, install_hint
    from bench.runtime import BenchError

    if isinstance(exc, BenchError) or not exc.name:
        return " ".join(str(exc).split())
    extra = extra_of_module(exc.name)
    return f"{exc.name} is not installed; " + (install_hint(extra) if extra else f"pip install the package that provides the module {exc.name}")


if __name__ == "__main__":
    raise SystemExit(main())
