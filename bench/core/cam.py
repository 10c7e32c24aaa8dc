"""Class activation maps (Zhou et al., CVPR 2016) from features + classifier weights.

For a GAP/GMP network with last feature map ``F (K, h, w)`` and classifier ``W (C, K)``,
the CAM of class ``c`` is ``M_c(x, y) = sum_k W[c, k] * F[k, x, y]`` (no bias; docs/protocol.md),
the same formula for GAP and GMP heads. For GAP, ``mean_xy(M_c) + b_c`` is the logit of c.

CAMs are computed for a batch and a few classes per image in one batched matrix product on
the features' device; the maps are then upsampled one image at a time to its original size
(:func:`upsample_cam`), so full-resolution maps never exist for a whole batch at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_activation_maps", "upsample_cam", "UPSAMPLE_MODES"]

#: Interpolation modes accepted by :func:`upsample_cam`.
UPSAMPLE_MODES: tuple[str, ...] = ("bilinear", "bicubic")


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half/bfloat16 inputs are up-cast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def class_activation_maps(features: Tensor, weight: Tensor, classes: Tensor) -> Tensor:
    """CAMs of chosen classes: ``M[b, j] = sum_k weight[classes[b, j], k] * features[b, k]``.

    One gather of the needed classifier rows and one batched matrix product
    ``(B, k, K) @ (B, K, h*w)``, on ``features.device``. Computed in float32 (float64 if
    either input is float64); half-precision inputs are up-cast first.

    Args:
        features: ``(B, K, h, w)`` last feature map.
        weight: ``(C, K)`` classifier weights (moved to the features' device if needed).
        classes: ``(B, k)`` integer class indices in ``[0, C)``, e.g. the top-k per image.

    Returns:
        ``(B, k, h, w)`` maps, dtype float32 (or float64, see above), on ``features.device``.

    Raises:
        ValueError: shape mismatch, non-integer ``classes``, or a class index out of range.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, K, h, w), got shape {tuple(features.shape)}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be (C, K), got shape {tuple(weight.shape)}")
    if classes.ndim != 2:
        raise ValueError(f"classes must be (B, k), got shape {tuple(classes.shape)}")
    b, kf, h, w = features.shape
    c, kw = weight.shape
    if kf != kw:
        raise ValueError(f"features have K={kf} channels but weight has K={kw} columns")
    if classes.shape[0] != b:
        raise ValueError(f"classes has {classes.shape[0]} rows for a batch of {b}")
    if classes.dtype.is_floating_point or classes.dtype.is_complex or classes.dtype == torch.bool:
        raise ValueError(f"classes must be an integer tensor, got {classes.dtype}")
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= c):
        raise ValueError(
            f"class indices must lie in [0, {c}), got range "
            f"[{int(classes.min())}, {int(classes.max())}]"
        )

    dtype = _compute_dtype(features, weight)
    device = features.device
    feats = features.to(dtype).reshape(b, kf, h * w)  # (B, K, hw)
    rows = weight.to(device=device, dtype=dtype)[classes.to(device=device, dtype=torch.long)]  # (B, k, K)
    return torch.bmm(rows, feats).reshape(b, classes.shape[1], h, w)


def upsample_cam(cam: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize CAMs to an image's original size with ``F.interpolate(align_corners=False)``.

    Args:
        cam: ``(k, h, w)`` maps of one image (``(B, k, h, w)`` also accepted).
        size: target ``(H, W)`` in pixels (the image's original height and width).
        mode: ``'bilinear'`` (docs/protocol.md default) or ``'bicubic'``.

    Returns:
        ``(k, H, W)`` (or ``(B, k, H, W)``), float32 (float64 if the input is float64), on the
        input's device. Bicubic may overshoot the input range slightly, as usual.

    Raises:
        ValueError: bad rank, mode or size.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1, got {size!r}")
    if cam.ndim not in (3, 4):
        raise ValueError(f"cam must be (k, h, w) or (B, k, h, w), got shape {tuple(cam.shape)}")
    x = cam.to(_compute_dtype(cam))
    batched = x if cam.ndim == 4 else x.unsqueeze(0)
    out = F.interpolate(batched, size=(int(size[0]), int(size[1])), mode=mode, align_corners=False)
    return out if cam.ndim == 4 else out.squeeze(0)
