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

import dataclasses
import re
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.format import MISSING, format_value, header, metric_name
from bench.core.metrics import ERROR_METRICS, IOU_STAT_THRESHOLDS
from bench.core.scoring import localizes

from bench.resources import resource_path
from bench.run.results import find_runs
from bench.run.score import GT_ONLY  # `bench score` runs of .npy maps

__all__ = [
    "wsol_table",
    "write_suite_tables",
    "wsol_result_frame",
    "wsol_result_title",
    "wsol_caption",
    "RunInfo",
    "load_runs",
    "paper_table",
    "compare_runs",
    "compare_families",
    "CompareError",
    "render",
    "text_cells",
    "assign_labels",
    "latex_escape",
    "latex_width_pt",
    "table_caption",
    "table_title",
    "COMPARE_METRICS",
    "PAPER_COLUMNS",
    "TEXTWIDTH_PT",
]

NOT_LOCALIZED = "n/a (FC head, needs gradient maps)"

COMPARE_METRICS = [*ERROR_METRICS, "mean_iou", *(f"iou_ge_{t}" for t in IOU_STAT_THRESHOLDS)]


class CompareError(ValueError):
    """Two runs cannot be compared (different data or protocol); the message says which."""


@dataclass(frozen=True)
class RunInfo:
    """What a report needs of one finished run.

    ``label`` names the run in every table: the ``--label`` given to ``bench run`` if any, else the
    method name; when two runs of one table would get the same name it is extended with the
    weights file's name, or else with the part of the run folder's path that tells them apart
    (see :func:`assign_labels`).
    """

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
    weights_path: str | None = None
    user_label: str | None = None  # `bench run --label`, recorded in the manifest
    label: str = ""
    n_classes: int = 0  # classes of the data the run was made on (1000: ImageNet's)

    @property
    def localized(self) -> bool:
        return localizes(self.head, self.cam_method)

    @property
    def base_label(self) -> str:
        return self.user_label or self.method


def load_runs(roots: Sequence[Path | str]) -> list[RunInfo]:
    """All finished runs under ``roots`` (run folders or folders containing them), labelled unambiguously."""
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
                weights_path=model.get("weights_path"),
                user_label=manifest.get("label"),
                n_classes=len(manifest["data"].get("class_ids") or []),
            )
        )
    return assign_labels(infos)


def assign_labels(infos: Sequence[RunInfo], *, per_suite: bool = True) -> list[RunInfo]:
    """Give every run a label no other run of the same suite (``per_suite=False``: of all) shares.

    The label is ``base_label`` (``--label`` or the method name). Runs whose base labels collide get
    `` (<weights file name>)`` when their weights files have different names, else
    `` (<folder>)``: the last component of their run folders' paths that differs between them.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(infos):
        groups.setdefault((r.base_label, r.suite if per_suite else ""), []).append(i)
    labels = [r.base_label for r in infos]
    for members in groups.values():
        if len(members) < 2:
            continue
        runs = [infos[i] for i in members]
        weights = [Path(r.weights_path).name if r.weights_path else "" for r in runs]
        if len(set(weights)) == len(weights) and all(weights):
            tags = weights
        else:
            tags = _distinguishing_parts([r.path for r in runs])
        for i, tag in zip(members, tags):
            labels[i] = f"{infos[i].base_label} ({tag})"
    return [dataclasses.replace(r, label=label) for r, label in zip(infos, labels)]


def _distinguishing_parts(paths: Sequence[Path]) -> list[str]:
    """For each path, the last component at which it differs from every other (else the full path)."""
    parts = [Path(p).resolve().parts[::-1] for p in paths]
    depth = max(len(p) for p in parts)
    for i in range(depth):
        picked = [p[i] if i < len(p) else "" for p in parts]
        if len(set(picked)) == len(picked):
            return picked
    return [str(p) for p in paths]


_METHOD_LABELS = {"backprop": "Backprop", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++"}


def _method_name(network: str, cam_method: str) -> str:
    """Row name: the network's (paper) name for CAM; 'Backprop on VGGnet' etc. as in the paper's Table 2."""
    if network == "center":  # the model-free baseline, whatever the method field says
        return "Center baseline"
    # library methods keep their own name: 'grad-cam:ScoreCAM on EfficientNet-Lite0'
    return network if cam_method == "cam" else f"{_METHOD_LABELS.get(cam_method, cam_method)} on {network}"


def _paper_numbers() -> pd.DataFrame:
    return pd.read_csv(resource_path("cam_paper_tables.csv"))


def _num(value: Any) -> Any:
    return None if value is None else round(float(value), 2)


#: The raw metric columns of each paper table (CSV identifiers = summary.json keys).
PAPER_COLUMNS: dict[int, list[str]] = {
    1: ["top1_cls_err", "top5_cls_err"],
    2: ["top1_loc_err", "top5_loc_err"],
    3: ["top5_loc_err", "top5_loc_err_tight_loose"],
}


def paper_table(runs: Sequence[RunInfo], paper: int, *, with_paper: bool = False, suite: str | None = None) -> pd.DataFrame:
    """Build Table ``paper`` (1, 2 or 3) from runs. Rows sorted by label; with ``with_paper`` the
    paper's own rows follow as baselines (``source`` = ``paper``, label ``<row> (paper)``).

    Columns: ``label, method, model, suite, images, <metrics>`` (+ ``box_ap`` in Table 2 when some run
    has a COCO export) ``, source``. ``suite`` restricts Tables 1-2 to runs of that suite (default:
    every run whose heuristic is top5).
    """
    if paper not in (1, 2, 3):
        raise ValueError(f"--paper must be 1, 2 or 3, got {paper}")
    base = [r for r in runs if r.heuristic == "top5" and (suite is None or r.suite == suite) and "pointing_accuracy" not in r.summary]  # pointing runs: `bench table --pointing`
    metrics = PAPER_COLUMNS[paper]
    rows: list[dict[str, Any]] = []
    for r in base:
        row = {"label": r.label or r.base_label, "method": r.method, "model": r.model, "suite": r.suite, "images": r.summary.get("scored")}
        if r.summary.get("gt_class_maps_only"):  # `bench score` of .npy maps: no ranked classes, no top-k
            row.update({m: GT_ONLY for m in metrics})
        elif paper == 1:
            row.update({m: _num(r.summary.get(m)) for m in metrics})
        elif not r.localized:
            row.update({m: NOT_LOCALIZED for m in metrics})
        elif paper == 2:
            row.update({m: _num(r.summary.get(m)) for m in metrics})
        else:
            twins = [
                h
                for h in runs
                if h.heuristic == "tight_loose"
                and (h.model, h.cam_method, h.data_fingerprint, h.images_run, h.weights_path)
                == (r.model, r.cam_method, r.data_fingerprint, r.images_run, r.weights_path)
            ]
            row["top5_loc_err"] = _num(r.summary.get("top5_loc_err"))
            row["top5_loc_err_tight_loose"] = _num(twins[0].summary.get("top5_loc_err")) if twins else None
        row["source"] = "run"
        rows.append(row)
    columns = ["label", "method", "model", "suite", "images", *metrics]
    if paper == 2:
        from bench.analysis.run_metrics import read_box_ap

        box_ap = [read_box_ap(r.path) for r in base]
        if any(v is not None for v in box_ap):  # `bench export --coco` was run on some of them
            for row, value in zip(rows, box_ap):
                row["box_ap"] = None if value is None else round(value, 4)
            columns.append("box_ap")
    columns.append("source")
    frame = pd.DataFrame(rows, columns=columns).sort_values(["label", "suite"], kind="stable").reset_index(drop=True)
    if with_paper:
        frame = pd.concat([frame, _paper_rows(paper, columns)], ignore_index=True)
    return frame


def _paper_rows(paper: int, columns: Sequence[str]) -> pd.DataFrame:
    """The paper's own rows of Table ``paper`` (its published numbers), as baseline rows."""
    published = _paper_numbers()
    published = published[published["table"] == paper]
    rows: list[dict[str, Any]] = []

    def value(v: Any) -> Any:
        return None if pd.isna(v) else float(v)

    if paper in (1, 2):
        for p in published.itertuples(index=False):
            rows.append({"label": f"{p.method} (paper)", "method": p.method, "model": None, "suite": None, "images": None,
                         columns[5]: value(p.top1_err), columns[6]: value(p.top5_err), "source": "paper"})  # fmt: skip
    else:
        by_method = {p.method: p for p in published.itertuples(index=False)}
        for p in published.itertuples(index=False):
            if p.method.endswith(" (heuristics)"):
                continue
            heur = by_method.get(f"{p.method} (heuristics)")
            name = p.method if p.supervision == "weak" else f"{p.method}, full supervision"
            rows.append({"label": f"{name} (paper, {p.split})", "method": p.method, "model": None, "suite": None, "images": None,
                         "top5_loc_err": value(p.top5_err), "top5_loc_err_tight_loose": None if heur is None else value(heur.top5_err),
                         "source": "paper"})  # fmt: skip
    return pd.DataFrame(rows, columns=list(columns))


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
    """Metric rows, columns A, B (named by the runs' labels, made distinct), ``delta`` = B − A
    (percent points; mean_iou in 0-1), and for the error metrics a paired bootstrap 95% interval of
    B − A (``ci_lo``, ``ci_hi``) and the exact McNemar p-value on the per-image hits (``p_mcnemar``);
    see :mod:`bench.analysis.stats`. ``frame.attrs`` holds ``a`` and ``b`` (the labels) and their paths."""
    from bench.run.results import RunDir
    from bench.analysis.stats import paired_comparison

    _check_comparable(a, b)
    if (a.label or a.base_label) == (b.label or b.base_label):
        a, b = assign_labels([a, b], per_suite=False)
    label_a, label_b = a.label or a.base_label, b.label or b.base_label
    if label_a == label_b:  # one run folder given twice under two names: say which side is which
        label_a, label_b = f"{label_a} (A)", f"{label_b} (B)"
    paired = paired_comparison(RunDir(a.path).read_records(), RunDir(b.path).read_records(), n=bootstrap, seed=seed)
    paired = paired.set_index("metric")
    rows = []
    for metric in COMPARE_METRICS:
        va, vb = a.summary.get(metric), b.summary.get(metric)
        delta = None if va is None or vb is None else round(float(vb) - float(va), 4)
        row = {"metric": metric, label_a: _num4(va), label_b: _num4(vb), "delta": delta}
        if metric in paired.index and delta is not None:
            stats = paired.loc[metric]
            row.update(ci_lo=_num4(stats["ci_lo"]), ci_hi=_num4(stats["ci_hi"]), p_mcnemar=_num4(stats["p_value"]))
        else:
            row.update(ci_lo=None, ci_hi=None, p_mcnemar=None)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["metric", label_a, label_b, "delta", "ci_lo", "ci_hi", "p_mcnemar"])
    frame.attrs.update(kind="compare", a=label_a, b=label_b, a_path=str(a.path), b_path=str(b.path))
    return frame


def _num4(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def compare_families(runs: Sequence[RunInfo], tag_a: str, tag_b: str, suite: str | None = None) -> pd.DataFrame:
    """Pair runs whose head is ``tag_a`` / ``tag_b`` (e.g. gap / gmp) by backbone family and suite.

    Returns a long table: family, suite, metric, A, B, delta (= B − A), ci_lo, ci_hi, p_mcnemar.
    Raises CompareError when no pair is found or when a pair was run on different data or protocol.
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
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs.update(kind="compare", a=tag_a, b=tag_b)
    return frame


# ---- rendering ---------------------------------------------------------------------------------
#: Width budget of the LaTeX export: \textwidth of a two-column paper (CVPR/ICCV: 6.875 in).
TEXTWIDTH_PT = 496.0
_TABCOLSEP_PT = 6.0
_FONT_SIZES = (("", 1.0), (r"\small", 0.9), (r"\footnotesize", 0.8))


@dataclass(frozen=True)
class _Display:
    """A frame as text cells ready for a renderer (unescaped), with human headers."""

    headers: list[str]
    cells: list[list[str]]
    numeric: list[bool]
    paper_from: int | None  # first row that is one of the paper's rows (a rule goes above it)
    notes: list[str]  # sentences for the caption (constant columns, what A and B are)


def _display(frame: pd.DataFrame, *, latex: bool) -> _Display:
    frame = frame.copy()
    attrs = dict(frame.attrs)
    notes: list[str] = []
    compare = attrs.get("kind") == "compare"
    if "label" in frame.columns:  # one name column: the label (method and model are in the CSV)
        frame = frame.drop(columns=[c for c in ("method", "model") if c in frame.columns])
    paper_from = None
    if "source" in frame.columns:
        is_paper = (frame["source"] == "paper").to_numpy()
        paper_from = int(is_paper.argmax()) if is_paper.any() and not is_paper.all() else None
        frame = frame.drop(columns=["source"])
    for column in ("family", "suite"):  # a column with one value becomes a sentence of the caption
        if column in frame.columns:
            values = {v for v in frame[column] if isinstance(v, str)}
            if len(values) <= 1:
                if values:
                    notes.append(f"{header(column)}: {values.pop()}.")
                frame = frame.drop(columns=[column])
    metric_rows = frame["metric"].tolist() if "metric" in frame.columns else None
    if compare and {"ci_lo", "ci_hi"} <= set(frame.columns):
        position = frame.columns.get_loc("ci_lo")
        ci = []
        for i, (lo, hi) in enumerate(zip(frame["ci_lo"], frame["ci_hi"])):
            m = metric_rows[i] if metric_rows else None
            ci.append(MISSING if lo is None or pd.isna(lo) else f"[{format_value(lo, m)}, {format_value(hi, m)}]")
        frame = frame.drop(columns=["ci_lo", "ci_hi"])
        frame.insert(position, "ci", ci)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) or c in ("ci", "images") for c in frame.columns]
    headers = []
    for c in frame.columns:
        if compare and c in (attrs.get("a"), attrs.get("b")) and c not in ("metric", "delta"):
            side = "A" if c == attrs.get("a") else "B"
            headers.append(side if latex else f"{side}: {c}")
        elif compare and c == "delta":
            headers.append("B − A")
        else:
            headers.append(header(str(c)))
    if compare:
        a, b = attrs.get("a"), attrs.get("b")
        where = (f" ({attrs['a_path']})", f" ({attrs['b_path']})") if "a_path" in attrs else ("", "")
        notes.append(f"A = {a}{where[0]}, B = {b}{where[1]}; B − A in percentage points (mean IoU: 0–1 scale); "
                     "95% CI: paired bootstrap; p: exact McNemar test.")  # fmt: skip
    cells = []
    for i, row in enumerate(frame.itertuples(index=False)):
        out = []
        for column, value in zip(frame.columns, row):
            if column == "metric":
                out.append(metric_name(str(value)))
                continue
            metric = metric_rows[i] if metric_rows else str(column)
            out.append(format_value(value, metric, column=str(column), latex=latex))
        cells.append(out)
    return _Display(headers, cells, numeric, paper_from, notes)


def text_cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool], list[str]]:
    """The frame as shown to people (console, Markdown, HTML): human headers, one text cell per
    value (:func:`bench.report.format.format_value`), which columns are numeric, caption notes."""
    d = _display(frame, latex=False)
    return d.headers, d.cells, d.numeric, d.notes


def _markdown(frame: pd.DataFrame, title: str | None) -> str:
    d = _display(frame, latex=False)
    lines = [] if title is None else [title + (" " + " ".join(d.notes) if d.notes else ""), ""]
    lines.append("| " + " | ".join(d.headers) + " |")
    lines.append("|" + "|".join(" ---: " if n else " --- " for n in d.numeric) + "|")
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in d.cells]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {"%": r"\%", "&": r"\&", "#": r"\#", "_": r"\_", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "<": r"\textless{}", ">": r"\textgreater{}", "≥": r"$\geq$", "−": r"$-$", "–": "--"}


def latex_escape(text: str) -> str:
    """Text for LaTeX's text mode in any font encoding (``<``/``>`` would print as ¡/¿ in OT1)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _latex_cell(text: str) -> str:
    if text.startswith("$<$"):  # already math (the p-value floor)
        return text
    # a minus sign, not a hyphen, before a number ("-16.67", "[-21.00, -12.00]")
    return re.sub(r"-(?=\d)", "\x00", latex_escape(text)).replace("\x00", "$-$")


def _split_header(text: str) -> list[str]:
    """Headers longer than 10 characters go on two lines, split at the space nearest the middle."""
    if len(text) <= 10 or " " not in text:
        return [text]
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return [text[:cut], text[cut + 1 :]]


def text_width_pt(text: str) -> float:
    """A generous estimate of ``text``'s width in points at 10 pt Computer Modern: 5.5 pt per
    lowercase letter, digit or sign, 7.5 pt per capital, 10 pt for wide signs (real CM: digits
    5 pt, lowercase 2.8-8.3 pt, average about 4.7 pt)."""
    width = 0.0
    for ch in text:
        if ch.isupper() or ch in "%&@":
            width += 7.5
        elif ch in "—≥":
            width += 10.0
        else:
            width += 5.5
    return width


def latex_width_pt(frame: pd.DataFrame, scale: float = 1.0) -> float:
    """The width budget of the LaTeX rendering of ``frame`` at a font scale (1 = 10 pt): the sum of
    the columns' widest cells (headers by their longer line) plus the column separation."""
    d = _display(frame, latex=True)
    total = 0.0
    for j, head in enumerate(d.headers):
        texts = [*_split_header(head), *(row[j].replace("$<$", "<").replace("$-$", "-") for row in d.cells)]
        total += scale * max(text_width_pt(t) for t in texts) + 2 * _TABCOLSEP_PT
    return total


def _latex(frame: pd.DataFrame, caption: str | None) -> str:
    d = _display(frame, latex=True)
    size = next((cmd for cmd, scale in _FONT_SIZES if latex_width_pt(frame, scale) <= TEXTWIDTH_PT), _FONT_SIZES[-1][0])
    align = "".join("r" if n else "l" for n in d.numeric)

    def head(text: str) -> str:
        lines = [latex_escape(t) for t in _split_header(text)]
        return lines[0] if len(lines) == 1 else r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(lines) + r"\end{tabular}"

    full_caption = " ".join(t for t in [caption or "", *d.notes] if t)
    out = [r"\begin{table*}[t]", r"\centering"]
    if size:
        out.append(size)
    if full_caption:
        out.append(r"\caption{" + latex_escape(full_caption) + "}")
    out += [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(head(h) for h in d.headers) + r" \\", r"\midrule"]
    for i, row in enumerate(d.cells):
        if d.paper_from is not None and i == d.paper_from:
            out.append(r"\midrule")
        out.append(" & ".join(_latex_cell(v) for v in row) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(out) + "\n"


def render(frame: pd.DataFrame, fmt: str, caption: str | None = None, title: str | None = None) -> str:
    """Render a table as ``csv`` (the source of truth: raw identifiers and values), ``latex``
    (a booktabs ``table*`` with caption, human headers, one name column, sized to fit
    :data:`TEXTWIDTH_PT`) or ``md`` (a title line, then the table). Numbers are written by
    :func:`bench.report.format.format_value` in both text formats. ``caption`` (LaTeX) and ``title``
    (Markdown) default to each other."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "md":
        return _markdown(frame, title if title is not None else caption)
    if fmt == "latex":
        return _latex(frame, caption if caption is not None else title)
    raise ValueError(f"unknown format {fmt!r}; choose csv, latex or md")


#: wsolevaluation's table (Choe et al., CVPR 2020): the metric reported per data set of a wsol suite.
WSOL_COLUMNS: dict[str, tuple[str, str]] = {
    "wsol_ilsvrc": ("ilsvrc_maxboxacc_v2", "maxboxacc_v2"),
    "wsol_cub": ("cub_maxboxacc_v2", "maxboxacc_v2"),
    "wsol_openimages": ("openimages_pxap", "pxap"),
}
#: The crop suites' columns beside MaxBoxAccV2: suite -> (Top-1 Loc column, GT-known Loc column), class-averaged
#: accuracies (%) from ``summary.json``'s ``crop`` (bench.core.crop.class_averaged).
CROP_COLUMNS: dict[str, tuple[str, str]] = {
    "ilsvrc_loc_crop": ("ilsvrc_top1_loc", "ilsvrc_gt_known_loc"),
    "cub_loc_crop": ("cub_top1_loc", "cub_gt_known_loc"),
}
#: What a table says when a number is the maximum over tau on the split it is scored on.
MAX_ON_SCORED_SPLIT = "scored split (max over τ: optimistic)"


def wsol_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """wsolevaluation's table shape: one row per method (label), MaxBoxAccV2 (%) on ILSVRC and CUB
    and PxAP (%) on OpenImages, from the ``sweep.json`` of each ``wsol_*`` suite run.

    A number whose threshold was chosen on another split (``bench run --select-on``) is that
    split's choice applied to the scored split; otherwise it is the maximum over tau on the scored
    split, and the ``threshold_chosen_on`` column says so (wsolevaluation's own warning). Runs made
    for ``--select-on`` (folders ``<model>@<split>``) are not rows of their own.

    Runs of the crop suites (``ilsvrc_loc_crop``, ``cub_loc_crop``) add their class-averaged Top-1 Loc and
    GT-known Loc (%) beside that data set's MaxBoxAccV2 (:data:`CROP_COLUMNS`), and where their box
    threshold came from to ``threshold_chosen_on``.
    """
    rows: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.suite in CROP_COLUMNS and "@" not in r.path.name:
            label = r.label or r.base_label
            row = rows.setdefault(label, {"label": label, "method": r.method, "model": r.model, "chosen": set()})
            crop = r.summary.get("crop") or {}
            top1, gt_known = CROP_COLUMNS[r.suite]
            row[top1], row[gt_known] = _num(crop.get("top1_loc_acc")), _num(crop.get("gt_known_loc_acc"))
            row["chosen"].add(f"crop τ: {r.summary.get('box_threshold_chosen_on', 'the suite file')}")
            continue
        if r.suite not in WSOL_COLUMNS or "@" in r.path.name:
            continue
        sweep_file = r.path / "sweep.json"
        if not sweep_file.is_file():
            continue
        sweep = json.loads(sweep_file.read_text())
        column, key = WSOL_COLUMNS[r.suite]
        selected = sweep.get("selected") or {}
        value = selected.get(key, sweep.get(key)) if key != "pxap" else sweep.get("pxap")
        label = r.label or r.base_label
        row = rows.setdefault(label, {"label": label, "method": r.method, "model": r.model, "chosen": set()})
        row[column] = _num(value)
        row["chosen"].add(selected.get("split") or MAX_ON_SCORED_SPLIT)
    columns = ["label", "method", "model", "ilsvrc_maxboxacc_v2", *CROP_COLUMNS["ilsvrc_loc_crop"], "cub_maxboxacc_v2",
               *CROP_COLUMNS["cub_loc_crop"], "openimages_pxap", "threshold_chosen_on"]  # fmt: skip
    out = []
    for row in rows.values():
        row["threshold_chosen_on"] = ", ".join(sorted(row.pop("chosen")))
        out.append(row)
    return pd.DataFrame(out, columns=columns).sort_values("label", kind="stable").reset_index(drop=True)


def wsol_result_frame(sweep: dict[str, Any]) -> pd.DataFrame:
    """One run's wsolevaluation results (``sweep.json``) as a one-row table: MaxBoxAcc (δ = 50) and its
    best τ, MaxBoxAccV2 and its three per-δ values with their best τ (``"τ30/τ50/τ70"``), PxAP (only
    when the data has masks), the images scored and those failed or without a map. With
    ``--select-on``, the values are the reported split's at the thresholds chosen on the other split."""
    source = {**sweep, **(sweep.get("selected") or {})}
    if sweep.get("selected"):
        source["best_tau"], source["best_tau_v2"] = source.get("tau"), source.get("tau_v2", {})
    per_delta = {int(d): v for d, v in (source.get("maxboxacc_v2_per_delta") or {}).items()}
    taus = {int(d): t for d, t in (source.get("best_tau_v2") or {}).items()}
    row: dict[str, Any] = {"maxboxacc": _num(source.get("maxboxacc")), "best_tau": source.get("best_tau"),
                           "maxboxacc_v2": _num(source.get("maxboxacc_v2"))}  # fmt: skip
    row |= {f"maxboxacc_v2_{d}": _num(per_delta[d]) for d in sorted(per_delta)}
    row["best_tau_v2"] = "/".join(format_value(taus[d], "best_tau") for d in sorted(taus)) or None
    if sweep.get("pxap") is not None:
        row["pxap"] = _num(sweep["pxap"])
    row |= {"images": int(sweep.get("images") or 0), "failed": int(sweep.get("failed_or_uncached") or 0)}
    return pd.DataFrame([row])


def wsol_result_title(name: str, suite: str, sweep: dict[str, Any], where: str) -> str:
    """The title of :func:`wsol_result_frame`'s table on the console."""
    chosen = (sweep.get("selected") or {}).get("split") or MAX_ON_SCORED_SPLIT
    return (
        f"{name} on {suite}: wsolevaluation's sweep (step {sweep.get('step')}), values in %, τ chosen on {chosen}"
        f" — results in {where}"
    )


def wsol_caption(frame: pd.DataFrame) -> str:
    text = (
        "WSOL benchmark table (Choe et al., CVPR 2020 shape): MaxBoxAccV2 (%) on ILSVRC and CUB, PxAP (%) on "
        "OpenImages, wsolevaluation's rules."
    )
    crop = [c for pair in CROP_COLUMNS.values() for c in pair if c in frame.columns]
    if crop and frame[crop].notna().any().any():
        text += (" Top-1 Loc and GT-known Loc (%): the crop protocol of the BAS/PSOL papers (256 resize, 224 centre crop,"
                 " IoU > 0.5, per-class mean), box threshold as threshold_chosen_on says.")
    if (frame["threshold_chosen_on"].str.contains("optimistic", regex=False)).any():
        text += " Thresholds chosen on the scored split are the maximum over τ there, an optimistic estimate."
    return text


def table_caption(paper: int, with_paper: bool = False) -> str:
    """The caption of Table ``paper``; ``with_paper``: the paper's rows are shown (Table 3 then says
    on which split the paper's numbers are)."""
    return {
        1: "Classification error (%) on the evaluated data (CAM paper Table 1 shape).",
        2: "Localization error (%) on the evaluated data (CAM paper Table 2 shape).",
        3: "Top-5 localization error (%) without and with the tight/loose heuristic (CAM paper Table 3 shape"
        + ("; the paper's numbers are on ILSVRC test)." if with_paper else ")."),
    }[paper]


def table_title(paper: int, with_paper: bool = False) -> str:
    """``Table N. <caption>`` for console and Markdown output."""
    return f"Table {paper}. {table_caption(paper, with_paper)}"


def write_suite_tables(protocol: Any, out: Path) -> list[Path]:
    """Write a suite's paper tables (``protocol.tables``, from every run of the suite and its
    companions under ``out``) as CSV, Markdown and LaTeX to ``out/<suite>/tables/``; returns the files."""
    runs = [r for r in load_runs([out]) if r.suite in (protocol.name, *protocol.companions)]
    written = []
    for number in protocol.tables:
        frame = paper_table(runs, number, with_paper=False, suite=protocol.name)
        for fmt, ext in (("csv", "csv"), ("md", "md"), ("latex", "tex")):
            path = out / protocol.name / "tables" / f"table{number}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(frame, fmt, caption=table_caption(number), title=table_title(number)))
            written.append(path)
    return written
