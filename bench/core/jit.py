"""numba's ``njit`` for the compiled kernels (the ``fast`` extra), or a stand-in without numba.

:data:`AVAILABLE` says whether numba is installed. Without it :func:`njit` leaves each function as
plain Python, and the callers (:mod:`bench.core.sweep`, :mod:`bench.core.wsol`) never call the
kernels: they take their numpy / OpenCV paths, which give identical results.
"""

from __future__ import annotations

__all__ = ["AVAILABLE", "njit"]

try:  # optional dependency (the `fast` extra)
    from numba import njit

    AVAILABLE: bool = True
except ImportError:  # pragma: no cover - exercised only where numba is not installed
    AVAILABLE = False

    def njit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        """Stand-in decorator: leaves the function as plain Python (never called then)."""

        def wrap(fn):  # noqa: ANN001, ANN202
            return fn

        return wrap
