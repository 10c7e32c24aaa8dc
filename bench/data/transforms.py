"""Decoding and the protocol's input transform (DESIGN §5 "Input").

The whole image is resized to the model's square input size (aspect not kept, no crop: a centre crop
would cut GT boxes), bilinear (or bicubic) with antialiasing on the decoded uint8 RGB image, then
scaled to [0, 1] and normalised with the model's mean/std. Any decodable mode (CMYK, grayscale,
palette, RGBA) is converted to RGB; a file that cannot be decoded becomes an error string, never an
exception that kills the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.data.ilsvrc import GTImage

__all__ = ["decode_rgb", "InputTransform", "EvalImages"]

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def decode_rgb(path: Path) -> np.ndarray:
    """Decode an image file to a (H, W, 3) uint8 RGB array. Raises ``OSError``/``ValueError`` on bad files."""
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale to 8 bit instead of letting convert() clip at 255.
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            arr = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
            return np.repeat(arr[:, :, None], 3, axis=2)
        rgb = img.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8).copy()


class InputTransform:
    """uint8 RGB (H,W,3) -> float32 (3,S,S) normalised tensor."""

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
        antialias: bool = True,
    ):
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.interpolation = _INTERPOLATION[interpolation]
        self.antialias = antialias

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        resized = TF.resize(chw, [self.size, self.size], interpolation=self.interpolation, antialias=self.antialias)
        return (resized.to(torch.float32) / 255.0 - self.mean) / self.std


class EvalImages(Dataset):
    """The images of a val set, as the engine consumes them.

    Item ``i`` (position in ``indices``) is a dict: ``index`` (position in the val set), ``image``
    (3,S,S float32; zeros when the file failed), ``width``/``height`` (original pixels; 0 when
    failed) and ``error`` ("" when decoded fine).
    """

    def __init__(self, images: Sequence[GTImage], indices: Sequence[int], transform: InputTransform):
        self.images = images
        self.indices = list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        path = self.images[index].path
        try:
            rgb = decode_rgb(path)
            if rgb.shape[0] < 1 or rgb.shape[1] < 1:
                raise ValueError("image has no pixels")
            tensor = self.transform(rgb)
            height, width = rgb.shape[:2]
            error = ""
        except Exception as exc:  # every failure becomes a visible 'failed' record
            size = self.transform.size
            tensor = torch.zeros(3, size, size, dtype=torch.float32)
            width = height = 0
            error = _one_line(f"cannot decode {path}: {type(exc).__name__}: {exc}")
        return {"index": index, "image": tensor, "width": width, "height": height, "error": error}
