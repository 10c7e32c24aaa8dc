"""`bench report`: one self-contained HTML page, checked as text and rendered in headless Chromium.

The Chromium tests skip (saying so) only when no chromium binary is installed; CI installs it
(.ci/run). They load the page from a file:// URL with networking features off, take a screenshot
and fail on any console message (the page has no script, so any is an error), on any file the page
tries to load besides itself, and on a blank screenshot.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.report.html import compare_section, frame_to_html
from bench.report.tables import load_runs
from tests.conftest import PhotoRuns

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def runs(photo_runs: PhotoRuns) -> PhotoRuns:
    return photo_runs


@pytest.fixture(scope="module")
def report(runs: PhotoRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    assets = out.parent / "assets"
    args = ["report", str(runs.top5), str(runs.tight_loose), "--out", str(out), "--gallery", "1", "--assets", str(assets), "--device", "cpu"]
    assert main(args) == 0
    return out


# ---- the page as text ---------------------------------------------------------------------------
def test_report_is_self_contained_and_has_every_section(report: Path, runs: PhotoRuns) -> None:
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert not re.search(r"https?://", text)  # no external URL anywhere (not even in text)
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith(("data:", "#")), attr
    assert "url(" not in text  # no CSS resource either
    for needle in (
        'id="runs"', 'id="tables"', 'id="compare"', "Table 1.", "Table 2.", "Table 3.",
        "weights sha256", "GT fingerprint", "Threshold curve", "By object size", "By GT class", "Best 1 by GT-known IoU", "Worst 1 by GT-known IoU",
    ):  # fmt: skip
        assert needle in text, needle
    # Every run's manifest essentials are on the page.
    for run in (runs.top5, runs.tight_loose):
        manifest = json.loads((run / "manifest.json").read_text())
        for value in (manifest["protocol_hash"], manifest["model"]["weights_sha256"], manifest["data"]["fingerprint"], manifest["data"]["root"]):
            assert value in text, value
    assert text.count('class="run"') == 2
    # No GAP/GMP pair among the runs: the reason is shown, not a crash.
    assert "No comparison: no gap/gmp pair" in text


def test_embedded_images_decode_and_curve_assets_match(report: Path, runs: PhotoRuns) -> None:
    text = report.read_text(encoding="utf-8")
    uris = re.findall(r'<img src="data:image/(png|jpeg);base64,([^"]+)"', text)
    kinds = [k for k, _ in uris]
    assert kinds.count("png") == 2  # one curve per run
    assert kinds.count("jpeg") == 4  # best 1 + worst 1 per run
    sizes = []
    for _kind, data in uris:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        sizes.append(image.size)
        assert np.asarray(image.convert("L")).std() > 10  # not blank
    assert (760, 460) in sizes
    # The CSV download link holds the same numbers as the CSV written to --assets.
    links = re.findall(r'download="([^"]+)" href="data:text/csv;charset=utf-8;base64,([^"]+)"', text)
    assert len(links) == 2
    for name, data in links:
        embedded = base64.b64decode(data).decode()
        assert embedded == (report.parent / "assets" / name).read_text()
        frame = pd.read_csv(io.StringIO(embedded))
        assert frame["threshold"].iloc[0] == 0.0 and len(frame) == 20


def test_frames_are_escaped() -> None:
    frame = pd.DataFrame({"method": ["<b>x</b> & y"], "top1_err": [12.3456], "missing": [None]})
    table = frame_to_html(frame, caption='a "quoted" <caption>')
    assert "<b>" not in table and "&lt;b&gt;x&lt;/b&gt; &amp; y" in table
    assert '<td class="num">12.35</td>' in table and "<td>–</td>" in table
    assert "&lt;caption&gt;" in table


def testcompare_section_shows_the_gap_gmp_table_or_the_reason(runs: PhotoRuns) -> None:
    (base,) = load_runs([runs.top5])
    gap = replace(base, model="googlenet_gap", family="googlenet", head="gap", summary={**base.summary, "top1_loc_err": 60.0})
    gmp = replace(base, model="googlenet_gmp", family="googlenet", head="gmp", summary={**base.summary, "top1_loc_err": 65.5})
    html_text = compare_section([gap, gmp])
    assert "<table>" in html_text and "googlenet" in html_text and "No comparison" not in html_text
    row = re.search(r"<td>Top-1 loc. err.</td>(.*?)</tr>", html_text)
    # gap, gmp, delta, then the paired statistics of the (here identical) per-image records:
    # bootstrap interval [0, 0] and McNemar p = 1 -- written as the console and LaTeX write them
    assert row is not None and re.findall(r'class="num">([^<]*)<', row.group(1)) == ["60.00", "65.50", "5.50", "[0.00, 0.00]", "1.0000"]
    other = replace(gmp, data_fingerprint="f" * 64)
    refused = compare_section([gap, other])
    assert "No comparison: cannot compare" in refused and "different data" in refused and "<table>" not in refused


def test_report_without_runs_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


# ---- rendered in Chromium -------------------------------------------------------------------------
def _chromium(page: Path, tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run headless Chromium on a file:// page; returns the process (log in stderr) and the screenshot path."""
    assert CHROMIUM is not None
    shot = tmp / f"{page.stem}.png"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / ('profile-' + page.stem)}", f"--screenshot={shot}", "--window-size=1200,2000",
        "--enable-logging=stderr", "--v=1", *extra, page.as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return proc, shot


def _page_problems(log: str, page: Path) -> list[str]:
    """Console messages (the page has no script: any is a problem) and files loaded besides the page."""
    problems = [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    for url in re.findall(r"FileURLLoader::Start: (\S+)", log):
        if url != page.as_uri():
            problems.append(f"page loaded another file: {url}")
    problems += [line for line in log.splitlines() if "net::ERR_FILE_NOT_FOUND" in line or "Failed to load resource" in line]
    return problems


@needs_chromium
def test_the_console_check_catches_script_errors_and_missing_files(tmp_path: Path) -> None:
    """Negative control: the same check on a broken page must complain, or the real test proves nothing."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><img src="missing.png"><script>foo.bar();</script></body></html>')
    proc, _shot = _chromium(bad, tmp_path)
    problems = _page_problems(proc.stderr, bad)
    assert any("Uncaught ReferenceError" in p for p in problems), proc.stderr[-3000:]
    assert any("missing.png" in p for p in problems), proc.stderr[-3000:]


@needs_chromium
def test_report_renders_in_headless_chromium_without_console_errors(report: Path, tmp_path: Path) -> None:
    proc, shot = _chromium(report, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert shot.is_file(), proc.stderr[-3000:]
    assert _page_problems(proc.stderr, report) == []
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape == (2000, 1200, 3)
    assert pixels.std() > 20  # not blank
    dark = (pixels.sum(axis=2) < 200).mean()
    assert 0.005 < dark < 0.5  # text and rules are drawn, the page is not a black screen
    # The page shows its title in the top rows (dark text on white).
    assert (pixels[:80].sum(axis=2) < 200).sum() > 200
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'dom'}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert dom.returncode == 0
    assert "Tables 1–3 (CAM paper shapes)" in dom.stdout and dom.stdout.count("<img") == 6
