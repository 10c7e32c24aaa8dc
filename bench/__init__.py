"""WSOL benchmark harness: CAM localization on ILSVRC with the exact devkit protocol.

The Python API (README "Use from Python")::

    import bench
    run = bench.evaluate("simplecnn_gap", "data/val")          # a registry name, "module:factory", or an nn.Module
    run = bench.score_maps("maps/", "data/val")                 # a folder, or (image_id, classes, maps[, scores]) items
    run = bench.load_run("results/ilsvrc_loc/simplecnn_gap")
    run.summary["top1_loc_err"], run.records, run.path
    bench.BenchError                                            # the base class of every error meant for the user

The names are imported on first use (``import bench`` stays light).
"""

from typing import Any

from bench.version import __version__

__all__ = ["Run", "BenchError", "evaluate", "score_maps", "load_run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Run", "evaluate", "score_maps", "load_run"):
        from bench import api

        return getattr(api, name)
    if name == "BenchError":  # the base of every error the harness raises for the user (one clear line)
        from bench.runtime import BenchError

        return BenchError
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
