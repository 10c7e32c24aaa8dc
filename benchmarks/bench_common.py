"""Helpers shared by the benchmark scripts: appending result rows, measuring a process's own peak RSS."""

from __future__ import annotations

import csv
import resource
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def append_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append ``rows`` to the CSV ``path`` (header written when the file is new); says so on stderr."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended to {path}", file=sys.stderr)


def own_peak_rss_kb() -> int:
    """This process's own peak RSS in KiB: ``VmHWM`` of /proc/self/status (Linux). Not ``ru_maxrss``:
    a child started by fork + exec inherits its parent's ``ru_maxrss`` at the fork, so a parent that
    holds a lot of memory (e.g. after writing the images) would inflate every child's figure."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
