"""The centre baseline at several sigmas: GT-known error at the fixed threshold vs the sweep's maximum.

    bench data photos --out data/photos
    python scripts/center_sigma.py --data data/photos/voc [--sigmas 0.10 0.15 0.20 0.25 0.30] [--out results/center_sigma]

Runs ``wsol_ilsvrc`` (its records: the GT-known box at 0.20 of the max, largest 8-connected
component; its sweep: MaxBoxAccV2) with :class:`bench.models.center.CenterModel` at each sigma
(a fraction of the input frame's shorter side) and prints one Markdown row per sigma.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

from bench.models.center import CenterModel  # noqa: E402
from bench.run.engine import RunConfig  # noqa: E402
from bench.run.suite import SuiteRequest, run_named_suite  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.10, 0.15, 0.20, 0.25, 0.30])
    parser.add_argument("--suite", default="wsol_ilsvrc")
    parser.add_argument("--out", type=Path, default=Path("results/center_sigma"))
    args = parser.parse_args()
    print("| sigma (of the shorter side) | GT-known loc. err. at 0.20 (%) | mean IoU | MaxBoxAccV2 (%) |")
    print("| ---: | ---: | ---: | ---: |")
    for sigma in args.sigmas:
        request = SuiteRequest(suite=args.suite, models=(CenterModel(sigma),), data=args.data, out=args.out / f"sigma{sigma:.2f}", verbose=False)
        (run, *_rest) = run_named_suite(request, RunConfig(workers=0, progress=False))
        summary = json.loads((run.path / "summary.json").read_text())
        sweep = json.loads((run.path / "sweep.json").read_text())
        print(f"| {sigma:.2f} | {summary['gt_known_loc_err']:.2f} | {summary['mean_iou']:.4f} | {sweep['maxboxacc_v2']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
