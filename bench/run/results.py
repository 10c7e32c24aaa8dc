"""Run directories: manifest, per-image records in shards, summary. All writes are atomic.

Layout of one run (``<out>/<suite>/<run-id>/``)::

    .lock                      present while a run writes here (pid, host, start time; see RunDir.lock)
    manifest.json              what was run: resolved protocol + hash, model, weights sha256, data
                               fingerprint, versions, device, batch size, times, command line
    records/shard-00000.csv.gz per-image records of images [0, S), S = manifest.shard_size, ...
    records.csv.gz             all shards merged, sorted by image id (written when the run completes)
    summary.json               every metric of docs/protocol.md plus image counts

Per-image record columns (one row per image of the data set, failed images included):

    image_id      file stem, e.g. ILSVRC2012_val_00000001
    label         GT class index (sorted-WNID order)
    status        "ok" or "failed"
    error         why a failed image failed ("" when ok)
    blacklisted   1 if the image is on the protocol's blacklist (left out of localization denominators)
    width,height  original image size in pixels
    top5_classes  5 class indices by decreasing score, space separated
    top5_scores   their softmax probabilities, 6 decimals
    guess_classes the 5 scored guesses' classes (tight_loose: c1 c1 c2 c2 c3)
    guess_boxes   the 5 guesses' boxes "x1 y1 x2 y2;..." (xyxy, 0-based INCLUSIVE original pixels);
                  "" for models that do not localize
    guess_ious    each guess box's best IoU over the GT boxes (10 decimals: two distinct IoUs of
                  boxes in images up to 10,000 px a side differ by > 1e-9, so the rounding can
                  never move an IoU across a threshold), whatever its class
    guess_hits    1 if the guess localizes (right class and IoU >= protocol iou_threshold)
    gtk_box       the GT-class CAM's box (GT-known localization), "" if not localized
    gtk_iou       its best IoU over the GT boxes
    gtk_hit       1 if gtk_iou >= iou_threshold
    degenerate    1 if a CAM used for this image had max <= 0 (its box is the whole image)

IoUs are written with 10 decimals, scores with 6. Floats are written with fixed precision and files are gzip'ed with mtime 0, so the same run gives
byte-identical files.

Concurrency and interruption: every file is written to a temporary file in the same folder, then
renamed over the target (``os.replace``, atomic on POSIX), so a killed run leaves either the old or
the new file, never a torn one; unfinished shards are simply absent and are recomputed on resume.
One run writes to a folder at a time: :meth:`RunDir.lock` creates ``.lock`` with ``O_CREAT |
O_EXCL``, holding the writer's pid, host and start time. A second run on the same folder is
refused with :class:`RunLocked` naming that pid; a lock left by a process that no longer exists on
this host (a killed run) is reported on stderr and taken over, and the temporary files it left
behind are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import gzip
import io
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # POSIX: serialises the check-and-take-over of a stale lock between contenders
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pandas as pd

from bench.core.records import OPTIONAL_COLUMNS, RECORD_COLUMNS, record_columns, records_to_arrays, typed_records
from bench.runtime import atomic_write_bytes, current_umask


__all__ = [
    "RunDir",
    "RunLock",
    "RunLocked",
    "pid_alive",
    "atomic_write_bytes",
    "atomic_write_json",
    "current_umask",
    "records_to_arrays",
    "find_runs",
]

# ---- atomic writes: bench.runtime.atomic_write_bytes (one writer for runs, checkpoints and sidecars)
def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays as Python numbers and lists, and every dict key as text."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (numpy values converted, :func:`to_jsonable`), written atomically."""
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def _gzip_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())
    return buf.getvalue()


def records_to_csv_gz(records: Sequence[dict[str, Any]], columns: Sequence[str] = RECORD_COLUMNS) -> bytes:
    frame = pd.DataFrame(list(records), columns=list(columns))
    return _gzip_bytes(frame.to_csv(index=False, lineterminator="\n"))


def read_records(path: Path) -> pd.DataFrame:
    """Read a records CSV(.gz) with every text column kept as text ('' for empty)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    for col in OPTIONAL_COLUMNS:
        if col not in frame.columns:  # records written before the column existed
            frame[col] = ""
    missing = [c for c in RECORD_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a records file, missing columns {missing}")
    return typed_records(frame)


# ---- the run lock ------------------------------------------------------------------------------
class RunLocked(RuntimeError):
    """Another live run holds the run folder's lock (or the lock file cannot be judged)."""


@dataclass(frozen=True)
class RunLock:
    """The content of a ``.lock`` file; also what :meth:`RunDir.lock` yields to its holder.

    ``stale`` (on the holder's handle only) describes the dead run whose lock was taken over, or
    is None when the lock was free.
    """

    path: Path
    pid: int
    host: str
    started: str
    token: str
    proc_start: str | None = None
    command: tuple[str, ...] = ()
    stale: RunLock | None = None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    def payload(self) -> bytes:
        body = {
            "pid": self.pid,
            "host": self.host,
            "started": self.started,
            "proc_start": self.proc_start,
            "token": self.token,
            "command": list(self.command),
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    @classmethod
    def read(cls, path: Path) -> RunLock | None:
        """The lock at ``path``; None if it does not exist. ``ValueError`` if it is unreadable."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            body = json.loads(raw.decode())
            return cls(
                path=path,
                pid=int(body["pid"]),
                host=str(body["host"]),
                started=str(body["started"]),
                token=str(body["token"]),
                proc_start=body.get("proc_start"),
                command=tuple(body.get("command") or ()),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: unreadable lock file ({exc}; {len(raw)} bytes)") from None


def _proc_start(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22),
    which tells a live process from a later one that reuses its pid; None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, proc_start: str | None = None) -> bool:
    """True if process ``pid`` runs on this host (zombies count as dead). With ``proc_start``
    (see :class:`RunLock`), a process that merely reuses the pid also counts as dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:  # pragma: no cover - unusual platforms
        return False
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    state = text[text.rfind(")") + 2 :].split()[:1]
    if state == ["Z"] or state == ["X"]:
        return False
    return proc_start is None or _proc_start(pid) in (None, proc_start)


@contextlib.contextmanager
def _guard(folder: Path) -> Iterator[None]:
    """Exclusive ``flock`` on the folder itself (released by the kernel if the process dies)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


# ---- the run directory -------------------------------------------------------------------------
class RunDir:
    """One run's folder. Shard ``k`` holds the records of images ``[k*S, (k+1)*S)`` in data-set order."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def records_path(self) -> Path:
        return self.path / "records.csv.gz"

    @property
    def shard_dir(self) -> Path:
        return self.path / "records"

    def shard_path(self, index: int) -> Path:
        return self.shard_dir / f"shard-{index:05d}.csv.gz"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    @contextlib.contextmanager
    def lock(self, *, enabled: bool = True) -> Iterator[RunLock | None]:
        """Hold the run folder's lock for the duration of the ``with`` block.

        Creates ``<run>/.lock`` with ``O_CREAT | O_EXCL`` holding this process's pid, host, start
        time and a random token; removes it on exit (only if it is still this holder's). If the
        lock exists:

        * held by a live process on this host, or by any process on another host (whose liveness
          cannot be checked): :class:`RunLocked` naming the pid, host and start time;
        * left by a process that no longer exists on this host (e.g. a killed run): it is stale;
          a one-line report goes to stderr, the lock is taken over (the yielded lock's ``stale``
          describes the dead run) and the dead run's temporary files are removed.

        The check-and-take-over is serialised between contenders by an ``flock`` on the run
        folder, so two runs finding the same stale lock cannot both take it.
        ``enabled=False`` yields None and does nothing (e.g. ranks > 0 under torchrun, whose
        rank 0 holds the lock).
        """
        if not enabled:
            yield None
            return
        self.path.mkdir(parents=True, exist_ok=True)
        mine = RunLock(
            path=self.lock_path,
            pid=os.getpid(),
            host=socket.gethostname(),
            started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            token=secrets.token_hex(16),
            proc_start=_proc_start(os.getpid()),
            command=tuple(sys.argv),
        )
        with _guard(self.path):
            stale = self._take_lock(mine)
        if stale is not None:
            removed = self._remove_temp_files()
            print(
                f"bench: {self.lock_path}: stale lock of a run that is no longer running "
                f"({stale.describe()}); taking it over"
                + (f" and removing {removed} temporary file(s) it left" if removed else ""),
                file=sys.stderr,
            )
            mine = dataclasses.replace(mine, stale=stale)
        try:
            yield mine
        finally:
            self._release_lock(mine)

    def _take_lock(self, mine: RunLock) -> RunLock | None:
        """Create the lock file; returns the stale lock that was replaced, if any."""
        stale: RunLock | None = None
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            else:
                try:
                    os.write(fd, mine.payload())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                return stale
            try:
                held = RunLock.read(self.lock_path)
            except ValueError as exc:
                raise RunLocked(
                    f"{self.path} may be in use by another run: {exc}. If no run is writing to this "
                    f"folder, delete {self.lock_path} and rerun"
                ) from None
            if held is None:
                continue  # released between our open() and read(): try again
            if held.host != mine.host:
                raise RunLocked(
                    f"{self.path} is in use by another run ({held.describe()}); its liveness cannot be "
                    f"checked from host {mine.host}. Wait for it to finish, or choose another --out; "
                    f"if that run is dead, delete {self.lock_path}"
                )
            if pid_alive(held.pid, held.proc_start):
                raise RunLocked(
                    f"{self.path} is in use by another run ({held.describe()}"
                    + (f", command: {' '.join(held.command)}" if held.command else "")
                    + f"). Wait for pid {held.pid} to finish, stop it, or choose another --out"
                )
            stale = held
            self.lock_path.unlink(missing_ok=True)
        raise RunLocked(f"{self.path}: could not create {self.lock_path}")  # pragma: no cover

    def _release_lock(self, mine: RunLock) -> None:
        with _guard(self.path):
            try:
                held = RunLock.read(self.lock_path)
            except ValueError:
                return
            if held is not None and held.token == mine.token:
                self.lock_path.unlink(missing_ok=True)

    def _remove_temp_files(self) -> int:
        """Remove the ``.<name>.*.tmp`` files of interrupted atomic writes (call with the lock held)."""
        removed = 0
        for folder in (self.path, self.shard_dir):
            if not folder.is_dir():
                continue
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink()
                    removed += 1
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
        return removed

    def is_complete(self) -> bool:
        return self.summary_path.is_file() and self.records_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.manifest_path}: cannot read the run manifest ({exc})") from exc

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def read_summary(self) -> dict[str, Any]:
        try:
            return json.loads(self.summary_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.summary_path}: cannot read the run summary ({exc})") from exc

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    def done_shards(self) -> set[int]:
        if not self.shard_dir.is_dir():
            return set()
        return {int(p.name[6:11]) for p in self.shard_dir.glob("shard-?????.csv.gz")}

    def write_shard(self, index: int, records: Sequence[dict[str, Any]]) -> None:
        atomic_write_bytes(self.shard_path(index), records_to_csv_gz(records, self._record_columns()))

    def _record_columns(self) -> tuple[str, ...]:
        """The records' columns for this run's pipeline (its manifest; the crop pipeline adds some)."""
        pipeline = "resize"
        if self.manifest_path.is_file():
            pipeline = self.read_manifest().get("protocol", {}).get("input", {}).get("pipeline", "resize")
        return record_columns(pipeline)

    def merge_shards(self, n_shards: int) -> pd.DataFrame:
        """Concatenate shards 0..n-1 (all must exist) into ``records.csv.gz``; returns the frame."""
        missing = [k for k in range(n_shards) if not self.shard_path(k).is_file()]
        if missing:
            raise RuntimeError(f"{self.shard_dir}: shards {missing[:10]} missing; rerun the same command to finish")
        # Shards are concatenated as text (header once), so records.csv.gz is byte-identical to a
        # single-shard write of the same rows.
        lines: list[str] = []
        for k in range(n_shards):
            with gzip.open(self.shard_path(k), "rt", newline="") as fh:
                text = fh.read().split("\n")
            lines.extend(text[:1] if not lines else [])
            lines.extend(line for line in text[1:] if line)
        atomic_write_bytes(self.records_path, _gzip_bytes("\n".join(lines) + "\n"))
        return read_records(self.records_path)

    def read_records(self) -> pd.DataFrame:
        if not self.records_path.is_file():
            raise FileNotFoundError(f"{self.records_path}: the run has no merged records (is it finished?)")
        return read_records(self.records_path)


def find_runs(roots: Sequence[Path | str]) -> list[RunDir]:
    """Every finished run (a folder with manifest.json and summary.json) under the given folders."""
    runs: list[RunDir] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        candidates = [root] if (root / "manifest.json").is_file() else sorted(p.parent for p in root.rglob("manifest.json"))
        for c in candidates:
            run = RunDir(c)
            if run.summary_path.is_file() and c.resolve() not in seen:
                seen.add(c.resolve())
                runs.append(run)
    return runs
