"""The model-free centre baseline: an isotropic Gaussian centred on the image (wsolevaluation's row).

``center_map(height, width, sigma)`` is ``exp(-((x - cx)^2 + (y - cy)^2) / (2 s^2))`` on the pixel
centres ``x = 0 .. width-1``, ``y = 0 .. height-1`` with ``cx = (width - 1) / 2``,
``cy = (height - 1) / 2`` (the image's centre, in the 0-based pixel convention of the boxes) and
``s = sigma * min(height, width)`` pixels: ``sigma`` is a fraction of the shorter side. The peak
value 1 is reached at the centre pixel(s); the map is > 0 everywhere.

In a run (``bench run --model center``) the map is drawn on the model input frame, ``S x S`` (the
whole image resized without keeping its aspect, as every map of the harness and wsolevaluation's
224 x 224 frame), where it is isotropic with ``s = sigma * S``; the suite's resize then takes it to
the image's original size like any other map (there it has ``s_x = sigma * W``, ``s_y = sigma * H``).

Why ``sigma`` barely moves a threshold sweep's maximum (MaxBoxAcc, MaxBoxAccV2) but does move the
box at a fixed threshold: the foreground ``M > t`` of a Gaussian is the disc of radius
``r = s * sqrt(2 ln(1 / t))``, so changing ``s`` only relabels which ``t`` gives which disc; a sweep
over ``t`` sees the same family of centred boxes for every ``s`` (up to the grid of ``t`` and the
discs cut by the image border), and its maximum stays. At a fixed ``t`` (0.20 of the max, the CAM
protocol) the box side is ``2 s sqrt(2 ln 5) = 3.59 s``: 0.90 of the shorter side at
``sigma = 0.25``, 0.36 at ``sigma = 0.10``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["DEFAULT_SIGMA", "center_map", "center_maps"]

#: Default standard deviation as a fraction of the shorter side: the fixed-threshold (0.20) box is
#: then 0.90 of the image side, centred.
DEFAULT_SIGMA: float = 0.25


def center_map(height: int, width: int, sigma: float = DEFAULT_SIGMA, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:  # fmt: skip
    """The ``(height, width)`` isotropic Gaussian centred on the image, peak 1 (module docstring).

    Raises:
        ValueError: a size below 1 or ``sigma <= 0``.
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"size must be at least 1 x 1, got {height} x {width}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (a fraction of the shorter side), got {sigma}")
    s = float(sigma) * min(int(height), int(width))
    ys = torch.arange(int(height), dtype=torch.float64, device=device) - (int(height) - 1) / 2.0
    xs = torch.arange(int(width), dtype=torch.float64, device=device) - (int(width) - 1) / 2.0
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return torch.exp(-d2 / (2.0 * s * s)).to(dtype)


def center_maps(batch: int, k: int, size: tuple[int, int], sigma: float = DEFAULT_SIGMA,
                device: torch.device | str | None = None) -> Tensor:  # fmt: skip
    """``(batch, k, H, W)`` copies of :func:`center_map` (float32): the same map for every image and class."""
    return center_map(size[0], size[1], sigma, device=device).expand(batch, k, *size).contiguous()
