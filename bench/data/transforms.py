"""Decoding and the protocol's input transform (docs/protocol.md "Input").

The whole image is resized to the model's square input size (aspect not kept, no crop: a centre crop
would cut GT boxes), bilinear (or bicubic) with antialiasing on the decoded uint8 RGB image, then
scaled to [0, 1] and normalised with the model's mean/std.

Decoding policy (README "Robustness"); every refusal is an :class:`ImageDecodeError` whose text is
the reason written in the image's ``failed`` record, never an exception that kills the run:

* the format comes from the file's content, not its name (a PNG or GIF named ``.JPEG`` decodes);
* CMYK, grayscale, bilevel, palette and LA images are converted to RGB by Pillow; RGBA / LA / PA:
  the alpha channel is **dropped** (the stored colour of each pixel is kept, nothing is composited
  on a background); animated GIF/PNG: the **first frame**;
* 16-bit grayscale (``I;16*``) is scaled ``rint(v * 255 / 65535)``; 16-bit colour PNGs are reduced
  by Pillow itself to their high byte (``v >> 8``); 32-bit integer (``I``) images are scaled by
  their maximum;
* EXIF orientation is **not** applied: boxes refer to the pixels as stored, as in the ILSVRC
  annotations;
* truncated files are **refused** (Pillow's ``LOAD_TRUNCATED_IMAGES`` is forced off while
  decoding, whatever the process-wide setting): a half-grey image would be scored as if it were
  the photograph;
* images of more than :data:`MAX_PIXELS` pixels are refused from their header, before any pixel is
  decoded (the CAMs are upsampled to the original size: 4 bytes per pixel per map);
* anything that is not a readable regular file (directory, FIFO, device, broken symlink, missing,
  no read permission, 0 bytes) is refused before it is opened, so a FIFO cannot block a worker.
"""

from __future__ import annotations

import os
import stat
import warnings
from struct import error as struct_error
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from bench.data.dataset import GTImage

__all__ = [
    "MAX_PIXELS",
    "ImageDecodeError",
    "check_image_file",
    "decode_rgb",
    "failure_reason",
    "InputTransform",
    "EvalImages",
]

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}

#: Largest image (width x height) that is decoded; larger ones become ``failed`` records. Equal to
#: Pillow's default decompression-bomb threshold (``PIL.Image.MAX_IMAGE_PIXELS``, 0.25 GiB of
#: 24-bit pixels) but fixed here, so changing Pillow's global does not change which images a run
#: scores. At this size one float32 CAM at the original resolution is 358 MB.
MAX_PIXELS = 89_478_485

_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class ImageDecodeError(ValueError):
    """An image file that cannot become an RGB array; ``str(exc)`` is the recorded reason."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def check_image_file(path: Path) -> int:
    """Size in bytes of ``path`` if it is a non-empty regular file (symlinks followed), else
    :class:`ImageDecodeError` saying what it is. Never opens the file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageDecodeError(f"broken symlink: its target {os.readlink(path)} does not exist") from None
        raise ImageDecodeError("file not found (listed when the data set was loaded, gone when decoding)") from None
    except PermissionError:
        raise ImageDecodeError("permission denied (cannot stat the file)") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot stat the file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_TYPES if test(st.st_mode)), "not a regular file")
        raise ImageDecodeError(f"not a regular file: {kind}")
    if st.st_size == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    return st.st_size


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open (header only) with Pillow's decompression-bomb warning silenced: the size is checked
    against ``max_pixels`` by the caller; Pillow's own hard error (> 2 x its limit) is mapped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"too large: {exc} (limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image: Pillow cannot identify the file's format") from None
    except PermissionError:
        raise ImageDecodeError("permission denied (cannot open the file for reading)") from None
    except FileNotFoundError:
        raise ImageDecodeError("file not found (gone when decoding)") from None
    except (OSError, EOFError, SyntaxError, ValueError) as exc:  # e.g. a JPEG cut inside its header
        text = _one_line(exc)
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            raise ImageDecodeError(f"truncated image data ({text or type(exc).__name__})") from None
        raise ImageDecodeError(f"corrupt image header ({type(exc).__name__}: {text})") from None


def _load_strict(img: Image.Image) -> None:
    """``img.load()`` with truncated files refused, whatever ``ImageFile.LOAD_TRUNCATED_IMAGES`` says."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.seek(0)  # animated images: the first frame
        img.load()
    except (OSError, EOFError, SyntaxError, ValueError, IndexError, struct_error) as exc:
        text = _one_line(exc)
        if isinstance(exc, EOFError) or "truncated" in text.lower():
            raise ImageDecodeError(f"truncated image data ({text or type(exc).__name__})") from None
        raise ImageDecodeError(f"corrupt image data ({type(exc).__name__}: {text})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def decode_rgb(path: Path | str, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to a ``(H, W, 3)`` uint8 RGB array (policy: module docstring).

    Raises :class:`ImageDecodeError` (a ``ValueError``) with the reason on every refusal.
    """
    path = Path(path)
    check_image_file(path)
    with _open(path, max_pixels) as img:
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageDecodeError(f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageDecodeError(
                f"too large: {width}x{height} = {width * height:,} pixels, more than the limit of "
                f"{max_pixels:,} (bench.data.transforms.MAX_PIXELS)"
            )
        _load_strict(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale to 8 bit instead of letting convert() clip at 255.
            arr = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
            arr = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
            return np.repeat(arr[:, :, None], 3, axis=2)
        try:
            rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"cannot convert mode {img.mode} to RGB ({_one_line(exc)})") from None
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
    failed) and ``error`` ("" when decoded fine, else the reason, see :func:`failure_reason`).
    """

    def __init__(
        self,
        images: Sequence[GTImage],
        indices: Sequence[int],
        transform: InputTransform,
        max_pixels: int = MAX_PIXELS,
    ):
        self.images = images
        self.indices = list(indices)
        self.transform = transform
        self.max_pixels = int(max_pixels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        path = self.images[index].path
        try:
            rgb = decode_rgb(path, max_pixels=self.max_pixels)
            tensor = self.transform(rgb)
            height, width = rgb.shape[:2]
            error = ""
        except Exception as exc:  # every failure becomes a visible 'failed' record
            size = self.transform.size
            shape = getattr(self.transform, "shape", (3, size, size))  # the crop pipeline's views: more
            tensor = torch.zeros(*shape, dtype=torch.float32)
            width = height = 0
            error = failure_reason(exc, path)
        return {"index": index, "image": tensor, "width": width, "height": height, "error": error}


def failure_reason(exc: BaseException, path: Path) -> str:
    """The one-line reason recorded for a failed image. It never contains the image's folder (the
    record has the image id), so records do not depend on where the data set lives."""
    if isinstance(exc, ImageDecodeError):
        return _one_line(exc)
    text = str(exc).replace(str(path), Path(path).name)
    return _one_line(f"cannot decode: {type(exc).__name__}: {text}")
