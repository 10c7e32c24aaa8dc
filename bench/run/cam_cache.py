"""CAM cache: the top-k and GT-class CAMs of a run at feature-map resolution, for `bench rescore`.

With ``bench run --save-cams`` each records shard ``k`` gets a companion ``cams/shard-0000k.npz``
(numpy's compressed zip: one chunk per shard, deflate-compressed) holding, for the shard's images in
data-set order:

    index    (n,)            int64    position of the image in the val set
    classes  (n, k+1)        int32    the top-k classes by score, then the GT class
    cams     (n, k+1, h, w)  float32  their CAMs (no bias), before upsampling

Failed images have no entry. The maps are stored losslessly (the float32 values the run's boxes were
computed from), so saving them changes no result and re-scoring the cache with the same protocol
reproduces the run's records exactly. (Caches written before this were float16; they are read as is.)
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.run.results import RunDir, atomic_write_bytes

__all__ = ["cam_shard_path", "write_cam_shard", "read_cam_shard", "cache_size_bytes"]

_KEYS = ("index", "classes", "cams")


def cam_shard_path(run: RunDir, shard: int) -> Path:
    return run.path / "cams" / f"shard-{shard:05d}.npz"


def write_cam_shard(run: RunDir, shard: int, parts: Sequence[dict[str, np.ndarray]]) -> None:
    """Concatenate the batches' cached arrays of one shard and write them atomically (deterministic bytes)."""
    if parts:
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in _KEYS}
    else:  # a shard of failed images only
        arrays = {
            "index": np.zeros(0, np.int64),
            "classes": np.zeros((0, 0), np.int32),
            "cams": np.zeros((0, 0, 0, 0), np.float32),
        }
    buf = io.BytesIO()
    # Fixed member timestamps so the same run gives byte-identical cache files.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in _KEYS:
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    atomic_write_bytes(cam_shard_path(run, shard), buf.getvalue())


def read_cam_shard(run: RunDir, shard: int) -> dict[str, np.ndarray]:
    path = cam_shard_path(run, shard)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cached CAMs; rerun `bench run ... --save-cams` to build the cache")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in _KEYS}


def cache_size_bytes(run: RunDir) -> int:
    folder = run.path / "cams"
    return sum(p.stat().st_size for p in folder.glob("shard-*.npz")) if folder.is_dir() else 0
