"""The crop pipeline's input (suites ``ilsvrc_loc_crop``, ``cub_loc_crop``; docs/protocol.md "Crop protocol").

One decoded image becomes a stack of views, ``(1 + V, 3, crop, crop)`` float32, normalised with the
model's mean/std: view 0 is the centre crop of the ``resize x resize`` image (PIL bilinear), the one the
maps are made on; views ``1..V`` are what the classes come from (``input.classify``): the ten crops of
the ``resize x resize`` image (``tencrop``, V = 10), the whole image resized to ``crop x crop``
(``resize``, V = 1), or none (``crop``: view 0 classifies too). The image/box geometry is
:func:`bench.core.crop.to_crop`'s (the same function moves the GT boxes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from bench.core.crop import ten_crop_views, to_crop

__all__ = ["CropViews"]


class CropViews:
    """uint8 RGB ``(H, W, 3)`` -> float32 ``(1 + V, 3, crop, crop)`` (module docstring)."""

    def __init__(self, resize: int, crop: int, classify: str, mean: Sequence[float], std: Sequence[float]):
        if classify not in ("tencrop", "resize", "crop"):
            raise ValueError(f"classify must be 'tencrop', 'resize' or 'crop', got {classify!r}")
        self.resize, self.size, self.classify = int(resize), int(crop), classify
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        n_views = {"tencrop": 10, "resize": 1, "crop": 0}[classify]
        self.shape = (1 + n_views, 3, self.size, self.size)  # also the blank item of a failed image

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        cropped = to_crop(rgb, resize=self.resize, crop=self.size)
        views = [cropped.image[None]]
        if self.classify == "tencrop":
            views.append(ten_crop_views(cropped.resized, self.size))
        elif self.classify == "resize":
            whole = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((self.size, self.size), Image.BILINEAR)
            views.append(np.asarray(whole)[None])
        stack = torch.from_numpy(np.ascontiguousarray(np.concatenate(views))).permute(0, 3, 1, 2)
        return (stack.to(torch.float32) / 255.0 - self.mean) / self.std
