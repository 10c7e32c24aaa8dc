"""Validation shared by the box rules: what a localization map must be before it is thresholded."""

from __future__ import annotations

import numpy as np

__all__ = ["check_map"]


def check_map(cam: np.ndarray, *, finite: bool = False) -> np.ndarray:
    """A non-empty 2-D ``(H, W)`` float map (float16/32/64 kept, anything else as float64).

    ``finite=True`` also refuses NaN/inf. Raises ``ValueError`` naming the problem.
    """
    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise ValueError(f"CAM must be a 2-D (H, W) array, got shape {cam.shape}")
    if cam.size == 0:
        raise ValueError(f"CAM is empty, shape {cam.shape}")
    if cam.dtype not in (np.float16, np.float32, np.float64):
        cam = cam.astype(np.float64)
    if finite and not np.all(np.isfinite(cam)):
        raise ValueError(f"CAM is not finite: {int((~np.isfinite(cam)).sum())} non-finite values")
    return cam
