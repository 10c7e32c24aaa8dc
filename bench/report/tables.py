"""Tables in the shape of the CAM paper's Tables 1-3, exports (CSV / LaTeX booktabs / Markdown), compare.

Every table is built from finished run folders (``summary.json`` + ``manifest.json``); CSV is the
source of truth, LaTeX and Markdown are renderings of the same frame.

- Table 1: classification error (top-1, top-5, percent) per network, from runs of the top-5 protocol.
- Table 2: localization error (top-1, top-5, percent) per network, same runs. Networks that cannot
  be CAM-localized (fully connected heads) show a text saying so instead of a number.
- Table 3: top-5 localization error per network without and with the tight/loose heuristic, pairing
  a ``top5`` run and a ``tight_loose`` run of the same model on the same data. (The paper's Table 3
  is on ILSVRC *test*; ours is whatever data the runs used — the caption says which.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.core.scoring import localizes

from bench.resources import resource_path
from bench.run.results import find_runs

__all__ = [
    "RunInfo",
    "load_runs",
    "paper_table",
    "compare_runs",
    "compare_families",
    "CompareError",
    "render",
    "COMPARE_METRICS",
]

NOT_LOCALIZED = "n/a (FC head, needs gradient maps)"

COMPARE_METRICS = [
    "top1_cls_err",
    "top5_cls_err",
    "top1_loc_err",
    "top5_loc_err",
    "gt_known_loc_err",
    "mean_iou",
    "iou_ge_0.3",
    "iou_ge_0.5",
    "iou_ge_0.7",
]


class CompareError(ValueError):
    """Two runs cannot be compared (different data or protocol); the message says which."""


@dataclass(frozen=True)
class RunInfo:
    """What a report needs of one finished run."""

    path: Path
    model: str
    method: str  # the paper's row name when the network is in the paper, else the model name
    family: str
    head: str
    suite: str
    heuristic: str
    cam_method: str
    protocol_hash: str
    data_fingerprint: str
    images_run: int  # how many images of the data set the run covered (--limit)
    summary: dict[str, Any]

    @property
    def localized(self) -> bool:
        return localizes(self.head, self.cam_method)


def load_runs(roots: Sequence[Path | str]) -> list[RunInfo]:
    """All finished runs under ``roots`` (run folders or folders containing them)."""
    infos = []
    for run in find_runs(roots):
        manifest = run.read_manifest()
        summary = run.read_summary()
        model = manifest["model"]
        cam_method = manifest["protocol"]["cam"].get("method", "cam")
        infos.append(
            RunInfo(
                path=run.path,
                model=model["name"],
                method=_method_name(model.get("paper_name") or model["name"], cam_method),
                family=model["family"],
                head=model["head"],
                suite=manifest["protocol"]["protocol"]["name"],
                heuristic=manifest["protocol"]["guesses"]["heuristic"],
                cam_method=cam_method,
                protocol_hash=manifest["protocol_hash"],
                data_fingerprint=manifest["data"]["fingerprint"],
                images_run=manifest["data"]["images_run"],
                summary=summary,
            )
        )
    return infos


_METHOD_LABELS = {"backprop": "Backprop", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++"}


def _method_name(network: str, cam_method: str) -> str:
    """Row name: the network's (paper) name for CAM; 'Backprop on VGGnet' etc. as in the paper's Table 2."""
    return network if cam_method == "cam" else f"{_METHOD_LABELS[cam_method]} on {network}"


def _paper_numbers() -> pd.DataFrame:
    return pd.read_csv(resource_path("cam_paper_tables.csv"))


def _num(value: Any) -> Any:
    return None if value is None else round(float(value), 2)


def paper_table(runs: Sequence[RunInfo], paper: int, *, with_paper: bool = False, suite: str | None = None) -> pd.DataFrame:
    """Build Table ``paper`` (1, 2 or 3) from runs. Rows sorted by method name.

    ``suite`` restricts Tables 1-2 to runs of that suite (default: every run whose heuristic is top5).
    """
    if paper not in (1, 2, 3):
        raise ValueError(f"--paper must be 1, 2 or 3, got {paper}")
    base = [r for r in runs if r.heuristic == "top5" and (suite is None or r.suite == suite)]
    rows: list[dict[str, Any]] = []
    if paper in (1, 2):
        kind = "cls" if paper == 1 else "loc"
        for r in base:
            s = r.summary
            row = {"method": r.method, "model": r.model, "suite": r.suite, "images": s.get("scored")}
            if kind == "loc" and not r.localized:
                row["top1_err"] = row["top5_err"] = NOT_LOCALIZED
            else:
                row["top1_err"] = _num(s.get(f"top1_{kind}_err"))
                row["top5_err"] = _num(s.get(f"top5_{kind}_err"))
            rows.append(row)
        columns = ["method", "model", "suite", "images", "top1_err", "top5_err"]
        if kind == "loc":
            from bench.analysis.run_metrics import read_box_ap

            box_ap = [read_box_ap(r.path) for r in base]
            if any(v is not None for v in box_ap):  # `bench export --coco` was run on some of them
                for row, value in zip(rows, box_ap):
                    row["box_ap"] = None if value is None else round(value, 4)
                columns.append("box_ap")
    else:
        heuristic_runs = [r for r in runs if r.heuristic == "tight_loose"]
        for r in base:
            twins = [
                h
                for h in heuristic_runs
                if (h.model, h.cam_method, h.data_fingerprint, h.images_run)
                == (r.model, r.cam_method, r.data_fingerprint, r.images_run)
            ]
            row = {"method": r.method, "model": r.model, "suite": r.suite, "images": r.summary.get("scored")}
            if not r.localized:
                row["top5_loc_err"] = row["top5_loc_err_tight_loose"] = NOT_LOCALIZED
            else:
                row["top5_loc_err"] = _num(r.summary.get("top5_loc_err"))
                row["top5_loc_err_tight_loose"] = _num(twins[0].summary.get("top5_loc_err")) if twins else None
            rows.append(row)
        columns = ["method", "model", "suite", "images", "top5_loc_err", "top5_loc_err_tight_loose"]
    frame = pd.DataFrame(rows, columns=columns).sort_values(["method", "suite"], kind="stable").reset_index(drop=True)
    if with_paper:
        frame = _add_paper_columns(frame, paper)
    return frame


def _add_paper_columns(frame: pd.DataFrame, paper: int) -> pd.DataFrame:
    published = _paper_numbers()
    published = published[published["table"] == paper].set_index("method")

    def lookup(method: str, column: str) -> Any:
        if method in published.index:
            value = published.loc[method, column]
            return None if pd.isna(value) else float(value)
        return None

    frame = frame.copy()
    if paper in (1, 2):
        frame["paper_top1_err"] = [lookup(m, "top1_err") for m in frame["method"]]
        frame["paper_top5_err"] = [lookup(m, "top5_err") for m in frame["method"]]
    else:
        frame["paper_top5_loc_err"] = [lookup(m, "top5_err") for m in frame["method"]]
        frame["paper_top5_loc_err_tight_loose"] = [lookup(f"{m} (heuristics)", "top5_err") for m in frame["method"]]
    return frame


# ---- compare -----------------------------------------------------------------------------------
def _check_comparable(a: RunInfo, b: RunInfo) -> None:
    if a.data_fingerprint != b.data_fingerprint:
        raise CompareError(
            f"cannot compare {a.path} and {b.path}: they were run on different data "
            f"(GT fingerprint {a.data_fingerprint[:12]} vs {b.data_fingerprint[:12]}); rerun both on the same --data"
        )
    if a.images_run != b.images_run:
        raise CompareError(
            f"cannot compare {a.path} and {b.path}: they were run on different data subsets "
            f"({a.images_run} vs {b.images_run} images of the same set); rerun both with the same --limit"
        )
    if a.protocol_hash != b.protocol_hash:
        raise CompareError(
            f"cannot compare {a.path} and {b.path}: they used different protocols "
            f"({a.suite} {a.protocol_hash[:12]} vs {b.suite} {b.protocol_hash[:12]}); rerun both with the same --suite"
        )


def compare_runs(a: RunInfo, b: RunInfo, *, bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Metric rows, columns A, B, B - A (percent points; mean_iou in 0-1), and for the error metrics a
    paired bootstrap 95% interval of B - A (``ci_lo``, ``ci_hi``) and the exact McNemar p-value on the
    per-image hits (``p_mcnemar``); see :mod:`bench.analysis.stats`."""
    from bench.run.results import RunDir
    from bench.analysis.stats import paired_comparison

    _check_comparable(a, b)
    paired = paired_comparison(RunDir(a.path).read_records(), RunDir(b.path).read_records(), n=bootstrap, seed=seed)
    paired = paired.set_index("metric")
    rows = []
    for metric in COMPARE_METRICS:
        va, vb = a.summary.get(metric), b.summary.get(metric)
        delta = None if va is None or vb is None else round(float(vb) - float(va), 4)
        row = {"metric": metric, a.model: _num4(va), b.model: _num4(vb), "delta": delta}
        if metric in paired.index and delta is not None:
            stats = paired.loc[metric]
            row.update(ci_lo=_num4(stats["ci_lo"]), ci_hi=_num4(stats["ci_hi"]), p_mcnemar=_num4(stats["p_value"]))
        else:
            row.update(ci_lo=None, ci_hi=None, p_mcnemar=None)
        rows.append(row)
    return pd.DataFrame(rows)


def _num4(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def compare_families(runs: Sequence[RunInfo], tag_a: str, tag_b: str, suite: str | None = None) -> pd.DataFrame:
    """Pair runs whose head is ``tag_a`` / ``tag_b`` (e.g. gap / gmp) by backbone family and suite.

    Returns a long table: family, suite, metric, A, B, delta. Raises CompareError when no pair is found
    or when a pair was run on different data or protocol.
    """
    pairs = []
    for a in runs:
        if a.head != tag_a or (suite and a.suite != suite):
            continue
        for b in runs:
            if b.head == tag_b and (b.family, b.suite, b.cam_method) == (a.family, a.suite, a.cam_method):
                pairs.append((a, b))
    if not pairs:
        found = sorted({f"{r.model} ({r.suite})" for r in runs})
        raise CompareError(
            f"no {tag_a}/{tag_b} pair of the same backbone and suite among the runs found: {found or 'none'}; "
            f"run both, e.g. `bench run --suite ilsvrc_loc --model googlenet_{tag_a} --model googlenet_{tag_b} ...`"
        )
    frames = []
    for a, b in pairs:
        table = compare_runs(a, b)
        table.columns = ["metric", tag_a, tag_b, "delta", "ci_lo", "ci_hi", "p_mcnemar"]
        table.insert(0, "suite", a.suite)
        table.insert(0, "family", a.family)
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# ---- rendering ---------------------------------------------------------------------------------
# Metrics on a 0-1 scale (the rest are percent): shown with 4 decimals instead of 2.
_UNIT_SCALE_METRICS = {"mean_iou", "box_ap"}


def _cell(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: 2 decimals (percent), 4 for 0-1 metrics (a column, or a compare row)."""
    shown = frame.copy().astype(object)
    for i in range(len(frame)):
        row_digits = 4 if "metric" in frame.columns and frame["metric"].iloc[i] in _UNIT_SCALE_METRICS else 2
        for j, column in enumerate(frame.columns):
            digits = 4 if column in _UNIT_SCALE_METRICS else row_digits
            value = frame.iat[i, j]
            if column == "p_mcnemar" and isinstance(value, float) and 0 <= value < 1e-4:
                shown.iat[i, j] = "<0.0001"
                continue
            shown.iat[i, j] = _cell(value, 4 if column == "p_mcnemar" else digits)
    shown.columns = [str(c) for c in frame.columns]
    return shown


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join(" ---: " if pd.api.types.is_numeric_dtype(frame[c]) else " --- " for c in frame.columns) + "|"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in _shown(frame).itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _latex(frame: pd.DataFrame, caption: str | None) -> str:
    styler = _shown(frame).style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    if caption is not None:  # the caption is text too: escape LaTeX's specials (e.g. '%' starts a comment)
        caption = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in caption)
    return styler.to_latex(hrules=True, column_format=align, caption=caption, position_float="centering" if caption else None)


_LATEX_SPECIALS = {"%": r"\%", "&": r"\&", "#": r"\#", "_": r"\_", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def render(frame: pd.DataFrame, fmt: str, caption: str | None = None) -> str:
    """Render a table as ``csv`` (source of truth), ``latex`` (booktabs, escaped) or ``md``."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "md":
        return _markdown(frame)
    if fmt == "latex":
        return _latex(frame, caption)
    raise ValueError(f"unknown format {fmt!r}; choose csv, latex or md")


def table_caption(paper: int) -> str:
    return {
        1: "Classification error (%) on the evaluated data (CAM paper Table 1 shape).",
        2: "Localization error (%) on the evaluated data (CAM paper Table 2 shape).",
        3: "Top-5 localization error (%) without and with the tight/loose heuristic (CAM paper Table 3 shape; the paper's numbers are on ILSVRC test).",
    }[paper]
