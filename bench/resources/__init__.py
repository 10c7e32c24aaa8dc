"""Data files shipped with the package (class list, paper numbers, ILSVRC-2012 val boxes)."""

from importlib.resources import files
from pathlib import Path


def resource_path(name: str) -> Path:
    """Absolute path of a shipped data file, e.g. ``resource_path("imagenet_wnids.txt")``."""
    return Path(str(files("bench.resources").joinpath(name)))
