"""Shared runtime helpers: the device to run on, the library versions a run records, error types.

Every command that touches a device resolves it here; every manifest records
:func:`library_versions`. :class:`BenchError` is the base of the errors the command line turns
into one-line messages (exit status 2).
"""

from __future__ import annotations

import platform

import torch

from bench import version as bench_version

__all__ = ["BenchError", "RunError", "resolve_device", "library_versions", "host_facts"]


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
