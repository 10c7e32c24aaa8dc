"""One self-contained HTML page for a set of finished runs (`bench report RUN... --out report.html`).

The page needs nothing but itself: CSS is inline, images are ``data:`` URIs (curves as PNG, the
gallery as JPEG to keep the file small), the curve CSVs are ``data:`` download links, there is no
script and no external URL. Sections:

1. the runs: each manifest's essentials (suite and protocol hash, model, weights source and
   SHA-256, data root, layout and fingerprint, images, device, times, command) and its summary;
2. the CAM paper's Tables 1-3 shapes (:func:`bench.report.tables.paper_table`, with the paper's numbers);
3. GAP vs GMP (:func:`bench.report.tables.compare_families`), or the reason there is no comparison;
4. per run: the threshold curve (:mod:`bench.analysis.curves`) and a gallery of its best and worst images
   by GT-known IoU (:mod:`bench.report.overlays` overlays); for GAP/GMP twins on the same data, their worst
   images (by the GAP run) side by side.

Runs that cannot be replayed (FC heads, weights or data gone) keep sections 1-3; their section 4
says why. Every text from runs, frames and errors is HTML-escaped. The output depends only on the
runs (no timestamp of its own), so the same runs give the same page.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from bench import version as bench_version
from bench.analysis.curves import DEFAULT_THRESHOLDS, best_threshold, plot_curve, threshold_curve
from bench.report.format import format_value
from bench.report.tables import CompareError, RunInfo, compare_families, load_runs, paper_table, table_caption, text_cells
from bench.run.results import RunDir
from bench.report.overlays import Overlay, compose_side_by_side, recorded_command, render_run_images, select_images
from bench.run.replay import ReplayError, RunReplay

__all__ = ["build_report", "breakdown_block", "compare_section", "frame_to_html", "image_data_uri", "REPORT_CSS", "NETWORK_CURVE_SAMPLE"]

#: Images a run's threshold curve replays when the network must be re-run (no map cache).
NETWORK_CURVE_SAMPLE = 500

REPORT_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #1d1d1f; background: #fff; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 4px 0; }
code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; word-break: break-all; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; margin: 8px 0; }
.error { background: #fdecea; border-left: 4px solid #d93025; padding: 6px 10px; margin: 8px 0; }
.runs { display: flex; flex-wrap: wrap; gap: 16px; }
.run { flex: 1 1 520px; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid #ccc; display: block; }
figcaption { font-size: 0.85em; color: #444; margin-top: 4px; }
details { margin: 6px 0 12px; }
nav ul { columns: 2; }
"""


# ---- helpers --------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    """Text of a value outside a table (the run card): the shared formatter's, as everywhere."""
    return format_value(value)


def frame_to_html(frame: pd.DataFrame, caption: str | None = None) -> str:
    """A DataFrame as an escaped HTML table: the same headers, cells and numbers as the console and
    LaTeX (:func:`bench.report.tables.text_cells`); numbers right-aligned, missing values as '–'."""
    headers, cells, numeric, notes = text_cells(frame)
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    rows = []
    for row in cells:
        tds = "".join(f'<td class="num">{_esc(v)}</td>' if num else f"<td>{_esc(v)}</td>" for v, num in zip(row, numeric))
        rows.append(f"<tr>{tds}</tr>")
    text = " ".join(t for t in [caption or "", *notes] if t)
    cap = f"<caption>{_esc(text)}</caption>" if text else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th>{_esc(k)}</th><td class="mono">{_esc(_fmt(v))}</td></tr>' for k, v in pairs)
    return f"<table><tbody>{rows}</tbody></table>"


def image_data_uri(image: Image.Image, fmt: str = "PNG", *, max_width: int | None = None, quality: int = 88) -> str:
    """``data:image/...;base64,...`` of a Pillow image (optionally downscaled to ``max_width``)."""
    if max_width is not None and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt.upper() == "JPEG":
        image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
        mime = "image/jpeg"
    else:
        image.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _text_data_uri(text: str, mime: str = "text/csv") -> str:
    return f"data:{mime};charset=utf-8;base64,{base64.b64encode(text.encode('utf-8')).decode('ascii')}"


def _anchor(info: RunInfo) -> str:
    return "run-" + "".join(ch if ch.isalnum() else "-" for ch in f"{info.suite}-{info.model}-{info.path.name}")


def _figure(overlay: Overlay, caption: str, max_width: int) -> str:
    uri = image_data_uri(overlay.image, "JPEG", max_width=max_width)
    warn = "".join(f'<div class="note">{_esc(w)}</div>' for w in overlay.warnings)
    return f'<figure><img src="{uri}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}</figcaption>{warn}</figure>'


# ---- sections -------------------------------------------------------------------------------------
def _run_card(info: RunInfo) -> str:
    manifest = RunDir(info.path).read_manifest()
    model, data, settings = manifest["model"], manifest["data"], manifest.get("settings", {})
    protocol = manifest["protocol"]
    pairs = [
        ("folder", str(info.path)),
        ("suite", f"{info.suite} (v{protocol['protocol'].get('version')}, heuristic {info.heuristic})"),
        ("protocol hash", manifest["protocol_hash"]),
        ("protocol", protocol["protocol"].get("description", "")),
        ("CAM upsampling", protocol.get("cam", {}).get("upsample")),
        ("model", f"{model['name']} (head {model['head']}, input {model['input_size']}, CAM grid {model['grid']}x{model['grid']})"),
        ("paper row", model.get("paper_name")),
        ("weights", f"{model.get('weights_source')}: {model.get('weights_path')}"),
        ("weights sha256", model.get("weights_sha256")),
        ("data root", f"{data['root']} ({data['layout']} layout)"),
        ("GT fingerprint", data["fingerprint"]),
        ("images", f"{data['images_run']} of {data['images_total']} (blacklisted: {data.get('blacklisted', 0)})"),
        ("device / batch / workers", f"{settings.get('device')} / {settings.get('batch_size')} / {settings.get('workers')}"),
        ("started / finished", f"{manifest.get('started')} / {manifest.get('finished', 'unfinished')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
        ("command", recorded_command(manifest)),
    ]
    keys = ["scored", "failed", "degenerate_cams", "top1_cls_err", "top5_cls_err", "top1_loc_err", "top5_loc_err", "gt_known_loc_err", "mean_iou", "iou_ge_0.5"]
    summary = pd.DataFrame([{k: info.summary.get(k) for k in keys}])
    note = f'<div class="note">{_esc(info.summary["note"])}</div>' if info.summary.get("note") else ""
    return (
        f'<div class="run" id="{_anchor(info)}-manifest"><h3>{_esc(info.model)} on {_esc(info.suite)}</h3>'
        f"{_kv_table(pairs)}{frame_to_html(summary, 'summary (errors in %, mean IoU 0-1)')}{note}</div>"
    )


def _tables_section(infos: Sequence[RunInfo]) -> str:
    parts = ['<h2 id="tables">Tables 1–3 (CAM paper shapes)</h2>']
    for paper in (1, 2, 3):
        frame = paper_table(infos, paper, with_paper=True)
        if frame.empty:
            parts.append(f'<div class="note">Table {paper}: no run of the top-5 protocol among these runs.</div>')
        else:
            parts.append(frame_to_html(frame, f"Table {paper}. {table_caption(paper)}"))
    return "".join(parts)


def compare_section(infos: Sequence[RunInfo]) -> str:
    parts = ['<h2 id="compare">GAP vs GMP</h2>']
    try:
        frame = compare_families(infos, "gap", "gmp")
    except CompareError as exc:
        parts.append(f'<div class="note">No comparison: {_esc(exc)}</div>')
    else:
        parts.append(frame_to_html(frame, "GAP vs GMP twins of the same backbone and suite (errors in %, mean IoU 0-1)."))
    return "".join(parts)


_MAP_SOURCE_TEXT = {
    "map cache": "read from the run's map cache",
    "saved maps": "read from the run's saved maps",
    "network": "recomputed from the run's model",
}


def breakdown_block(info: RunInfo) -> str:
    """The run's per-object-size table and (collapsed) per-class table, from its summary."""
    parts = []
    for key, title, label in (
        ("by_size", "By object size (largest GT box / image: small < 10%, medium, large > 50%)", "size"),
        ("by_class", "By GT class", "class"),
    ):
        groups = info.summary.get(key)
        if not groups:
            continue
        frame = pd.DataFrame([{label: name, **values} for name, values in groups.items()])
        table = frame_to_html(frame, title)
        parts.append(f"<details><summary>{_esc(title)}</summary>{table}</details>" if key == "by_class" else table)
    return "".join(parts)


def _curve_block(replay: RunReplay, info: RunInfo, thresholds: Sequence[float], limit: int | None, batch_size: int, assets: Path | None) -> str:
    frame = threshold_curve(replay, thresholds, limit, batch_size=batch_size)
    png = plot_curve(frame)
    csv = frame.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    stem = f"curve_{info.suite}_{info.model}"
    if assets is not None:
        assets.mkdir(parents=True, exist_ok=True)
        (assets / f"{stem}.csv").write_text(csv)
        png.save(assets / f"{stem}.png", format="PNG")
    best = best_threshold(frame)
    best_text = (
        f"best GT-known accuracy {best['best_gt_known_loc_acc']:.2f}% at t = {best['best_threshold']:.2f}; " if best else ""
    )
    mism = frame.attrs.get("top1_mismatches", 0)
    warn = f'<div class="error">{mism} image(s) replayed with a different top-1 class than recorded.</div>' if mism else ""
    return (
        f"<h4>Threshold curve</h4><figure><img src=\"{image_data_uri(png)}\" alt=\"threshold curve of {_esc(info.model)}\">"
        f"<figcaption>{_esc(best_text)}protocol threshold(s) {_esc(', '.join(f'{t:.3f}' for t in replay.protocol.thresholds))}; "
        f"maps {_MAP_SOURCE_TEXT[replay.source]} "
        f"on {int(frame['images'].iloc[0]) if len(frame) else 0} images. "
        f'<a download="{_esc(stem)}.csv" href="{_text_data_uri(csv)}">Download CSV</a></figcaption></figure>{warn}'
        f"<details><summary>curve values</summary>{frame_to_html(frame)}</details>"
    )


def _gallery_block(replay: RunReplay, n: int, batch_size: int, max_width: int) -> str:
    parts = []
    for kind in ("best", "worst"):
        ids = select_images(replay.records, **{kind: n})
        if not ids:
            continue
        parts.append(f"<h4>{kind.capitalize()} {len(ids)} by GT-known IoU</h4>")
        for overlay in render_run_images(replay, ids, batch_size=batch_size):
            rec = replay.record(overlay.image_id)
            parts.append(_figure(overlay, f"{overlay.image_id}: GT-known IoU {float(rec['gtk_iou']):.3f}", max_width))
    return "".join(parts)


def _pairs(infos: Sequence[RunInfo]) -> list[tuple[RunInfo, RunInfo]]:
    """GAP/GMP twins: same family and suite, same data and image count."""
    out = []
    for a in infos:
        for b in infos:
            if a.head == "gap" and b.head == "gmp" and a.family == b.family and a.suite == b.suite and (a.data_fingerprint, a.images_run) == (b.data_fingerprint, b.images_run):
                out.append((a, b))
    return out


# ---- the page -------------------------------------------------------------------------------------
def build_report(
    runs: Sequence[Path | str],
    out: Path | str,
    *,
    gallery: int = 3,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    curve_limit: int | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    max_image_width: int = 1600,
    assets_dir: Path | str | None = None,
    title: str = "wsol-bench report",
) -> Path:
    """Write the report page for the finished runs under ``runs`` to ``out``; returns ``out``.

    Args:
        runs: run folders, or folders holding runs (as for ``bench table --runs``).
        gallery: how many best and how many worst images per run (0: no gallery).
        thresholds, curve_limit: the threshold sweep and the number of images it replays per run
            (None: every image when the run has a map cache, else the first
            :data:`NETWORK_CURVE_SAMPLE`, with a line on stderr that says so).
        device, batch_size: how maps are recomputed.
        max_image_width: gallery images wider than this are downscaled in the page.
        assets_dir: also write each curve's CSV and PNG there.

    Raises:
        FileNotFoundError: no finished run under ``runs``.
    """
    infos = sorted(load_runs(runs), key=lambda r: (r.suite, r.model, str(r.path)))
    if not infos:
        raise FileNotFoundError(f"no finished runs under {[str(r) for r in runs]}; run `bench run` first")
    assets = Path(assets_dir) if assets_dir is not None else None
    nav = "".join(f'<li><a href="#{_anchor(i)}">{_esc(i.model)} on {_esc(i.suite)}</a></li>' for i in infos)
    body = [
        f"<h1>{_esc(title)}</h1>",
        f"<p>wsol-bench {_esc(bench_version.__version__)} — {len(infos)} run(s). Errors are in percent; "
        "boxes are scored with the ILSVRC devkit rule (IoU ≥ 0.5 with a GT box of the right class).</p>",
        f'<nav><ul><li><a href="#runs">Runs</a></li><li><a href="#tables">Tables 1–3</a></li>'
        f'<li><a href="#compare">GAP vs GMP</a></li>{nav}</ul></nav>',
        '<h2 id="runs">Runs</h2><div class="runs">',
        *[_run_card(i) for i in infos],
        "</div>",
        _tables_section(infos),
        compare_section(infos),
    ]
    replays: dict[Path, RunReplay | str] = {}
    for info in infos:
        body.append(f'<h2 id="{_anchor(info)}">{_esc(info.model)} on {_esc(info.suite)}: curves and images</h2>')
        body.append(breakdown_block(info))
        if not info.localized:
            body.append(f'<div class="note">{_esc(info.model)} has a fully connected head: CAM does not apply, no curve or overlays.</div>')
            continue
        try:
            replay = RunReplay.open(info.path, device=device)
        except ReplayError as exc:
            replays[info.path] = str(exc)
            body.append(f'<div class="error">Cannot recompute this run\'s maps: {_esc(exc)}</div>')
            continue
        replays[info.path] = replay
        if gallery > 0:  # the sweep computes every map once; keep the gallery's for the overlays
            replay.retain(select_images(replay.records, best=gallery) + select_images(replay.records, worst=gallery))
        limit = curve_limit
        if limit is None and replay.source == "network":
            limit = NETWORK_CURVE_SAMPLE
            n_ok = len(replay.run_image_ids())
            if n_ok > limit:
                print(
                    f"bench report: {info.path} has no map cache: its threshold curve re-runs the network on the first "
                    f"{limit} of {n_ok} images (--curve-limit N to change; bench run --save-cams avoids the re-run)",
                    file=sys.stderr,
                )
        body.append(_curve_block(replay, info, thresholds, limit, batch_size, assets))
        if gallery > 0:
            body.append(_gallery_block(replay, gallery, batch_size, max_image_width))
    for a, b in _pairs(infos):
        ra, rb = replays.get(a.path), replays.get(b.path)
        if not isinstance(ra, RunReplay) or not isinstance(rb, RunReplay) or gallery <= 0:
            continue
        ids = select_images(ra.records, worst=gallery)
        body.append(f"<h2>{_esc(a.model)} vs {_esc(b.model)} ({_esc(a.suite)}): worst {len(ids)} of the GAP run, side by side</h2>")
        for oa, ob in zip(render_run_images(ra, ids, batch_size=batch_size), render_run_images(rb, ids, batch_size=batch_size)):
            pair = compose_side_by_side([oa, ob], [ra.label, rb.label])
            body.append(_figure(pair, f"{oa.image_id}: {a.model} (left) vs {b.model} (right)", max_width=max_image_width))
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{_esc(title)}</title><style>{REPORT_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
