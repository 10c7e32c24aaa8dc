"""Rebuild a run's data set from its manifest (one function for every command that reloads data).

``bench show``, ``report``, ``sweep``, ``rescore`` and ``export`` re-read the ground truth of a
finished run. :func:`run_dataset` rebuilds it from what the manifest recorded (data root, GT layout,
images folder, class list, the protocol's blacklist, the ``--limit`` is applied by the caller through
the records), optionally from a moved copy (``--data DIR``), and refuses data whose GT fingerprint is
not the recorded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.data.dataset import CSV_SYNSETS, DataError, Dataset
from bench.data.open import open_dataset, reopen
from bench.runtime import RunError

__all__ = ["RunDataError", "run_dataset", "recorded_images_dir"]


class RunDataError(RunError):
    """The run's data cannot be rebuilt, or is not the data the run was made on."""


def _command_option(command: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in a recorded command line (``--flag V`` or ``--flag=V``), if present."""
    args = list(command)
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def recorded_images_dir(manifest: dict[str, Any]) -> str | None:
    """The images folder the run read: the manifest's ``data.images_dir``, else (runs made before it
    was recorded) the ``--images`` of the recorded command line; None = found under the root."""
    data = manifest.get("data", {})
    if data.get("images_dir"):
        return str(data["images_dir"])
    return _command_option(manifest.get("command", []), "--images")


def run_dataset(
    manifest: dict[str, Any],
    *,
    data_root: Path | str | None = None,
    blacklist: str | None | bool = True,
    where: str = "",
) -> Dataset:
    """The data set of the run described by ``manifest``, checked against its GT fingerprint.

    Args:
        manifest: the run's ``manifest.json`` content.
        data_root: the data root if it moved since the run (default: the recorded root). A recorded
            images folder inside the old root moves with it.
        blacklist: True = the recorded protocol's blacklist; None/False = none; a string = that
            file relative to the root (another protocol's, for ``bench rescore``). The fingerprint
            is checked with the recorded protocol's blacklist.
        where: the run folder, for messages.

    Raises:
        RunDataError: the data cannot be read, or its GT is not the run's (the message names
            ``--data DIR``).
    """
    data = manifest["data"]
    recorded_root = Path(data["root"])
    root = Path(data_root) if data_root is not None else recorded_root
    images = recorded_images_dir(manifest)
    if images is not None and data_root is not None:
        try:  # an images folder inside the recorded root moves with the root
            images = str(root / Path(images).resolve().relative_to(recorded_root.resolve()))
        except ValueError:
            pass
    recorded_blacklist = manifest.get("protocol", {}).get("data", {}).get("blacklist") or None

    def load(blacklist_file: str | None, class_list: Path | None) -> Dataset:
        return open_dataset(
            root,
            layout=data["layout"],
            images=images,
            blacklist=(root / blacklist_file) if blacklist_file else None,
            classes=class_list,
        )

    if data.get("describe"):  # runs that describe their data (Dataset.describe): reopen exactly that
        return _reopen_described(data, data_root, recorded_blacklist, blacklist, where)
    # The class list: the layout's own (ImageNet's for WordNet data), else the data's synset mapping.
    attempts: list[Path | None] = [None]
    if (root / CSV_SYNSETS).is_file():
        attempts.append(root / CSV_SYNSETS)
    problems: list[str] = []
    for class_list in attempts:
        try:
            valset = load(recorded_blacklist, class_list)
        except DataError as exc:
            problems.append(str(exc).splitlines()[0])
            continue
        if valset.fingerprint() != data["fingerprint"]:
            problems.append(f"GT fingerprint {valset.fingerprint()[:12]} != recorded {data['fingerprint'][:12]}")
            continue
        wanted = recorded_blacklist if blacklist is True else (blacklist or None)
        return valset if wanted == recorded_blacklist else load(wanted, class_list)
    prefix = f"{where}: " if where else ""
    raise RunDataError(
        f"{prefix}the data under {root} is not the data of the run ({'; '.join(problems)}); "
        "pass the original data root with --data DIR"
    )


def _reopen_described(
    data: dict[str, Any], data_root: Path | str | None, recorded_blacklist: str | None, blacklist: str | None | bool, where: str
) -> Dataset:
    """:func:`run_dataset` for manifests holding ``data.describe``: reopen it (from ``data_root`` if
    it moved), check the fingerprint, then swap the blacklist if another one is asked for."""
    prefix = f"{where}: " if where else ""
    desc = dict(data["describe"])
    try:
        valset = reopen(desc, root=data_root)
    except DataError as exc:
        raise RunDataError(f"{prefix}the data of the run cannot be read ({str(exc).splitlines()[0]}); pass the data root with --data DIR") from None
    if valset.fingerprint() != data["fingerprint"]:
        raise RunDataError(
            f"{prefix}the data under {valset.root} is not the data of the run (GT fingerprint {valset.fingerprint()[:12]} != "
            f"recorded {data['fingerprint'][:12]}); pass the original data root with --data DIR"
        )
    wanted = recorded_blacklist if blacklist is True else (blacklist or None)
    if wanted == recorded_blacklist:
        return valset
    desc["blacklist"] = wanted
    return reopen(desc, root=data_root)
