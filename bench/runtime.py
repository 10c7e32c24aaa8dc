"""Shared runtime helpers: the device to run on, the library versions a run records, error types.

Every command that touches a device resolves it here; every manifest records
:func:`library_versions`. :class:`BenchError` is the base of the errors the command line turns
into one-line messages (exit status 2).
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

from bench import version as bench_version

__all__ = [
    "BenchError", "RunError", "resolve_device", "library_versions", "host_facts", "dist_env", "atomic_write",
    "atomic_write_bytes", "current_umask",
]


class BenchError(Exception):
    """An expected failure with a message for the user (the CLI prints it on one line, exit 2)."""


class RunError(BenchError, RuntimeError):
    """A run cannot start or continue as asked (e.g. a device that is not there)."""


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return name


def library_versions() -> dict[str, str]:
    """Versions of everything that can change a number: Python, torch, numpy, Pillow, libjpeg-turbo, ..."""
    import numpy
    import pandas
    import PIL
    import scipy
    import torchvision
    from PIL import features

    versions = {
        "bench": bench_version.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        # JPEG decoding (and so every number) depends on the decoder build.
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo") or "none",
    }
    try:
        from importlib.metadata import version

        versions["efficientnet_lite_pytorch"] = version("efficientnet-lite-pytorch")
    except Exception:  # not installed: the Lite models are unavailable anyway
        pass
    return versions


def host_facts() -> dict[str, object]:
    """The machine a run ran on (recorded in the manifest)."""
    import os

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}


# --------------------------------------------------------------------------- distributed environment


def dist_env() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` from ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``); ``(0, 1, 0)`` in a plain process. The one place these variables are read."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


# --------------------------------------------------------------------------- atomic writes


def current_umask() -> int:
    """The process's file-mode creation mask (from /proc on Linux; elsewhere set-and-restore)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # pragma: no cover - non-Linux
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(fh)`` on a temporary file in the same folder, fsync, then an
    atomic rename (``os.replace``): a killed process leaves the old file or the new one, never a torn
    one. The temporary file is ``.<name>.<random>.tmp`` (what a stale run lock's cleanup removes) and
    the file gets the mode any new file gets (0666 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))
