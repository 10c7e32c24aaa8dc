"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``) for runs on CUDA.

On a GPU the network is rarely the bottleneck: decoding is. With ``bench run --decode cuda``
(the default on CUDA, :func:`resolve_decode`) the DataLoader workers only read files and check
them; the JPEGs of a batch are decoded on the device in one batched call and resized and
normalised there. The CPU path (:class:`bench.data.transforms.EvalImages`) is unchanged.

:class:`EncodedImages` (runs in the DataLoader workers) applies the CPU decoder's policy
(:mod:`bench.data.transforms`) to everything it can without decoding pixels: the file checks,
Pillow's format identification from the content, the pixel limit from the header. Then per image:

* a plain JPEG (Pillow format ``JPEG``, mode ``RGB`` or ``L``, not progressive, ending with the
  EOI marker) is passed on as its bytes, for :func:`decode_batch` to decode on the device;
* anything else (PNG or GIF named ``.JPEG``, CMYK/YCCK JPEGs, progressive or truncated JPEGs,
  16-bit images, ...) is decoded on the CPU right there by
  :func:`bench.data.transforms.decode_rgb`, so the policy (and its refusals, e.g. truncated
  data) is exactly the CPU path's;
* a refusal becomes the image's error, as in ``EvalImages``.

:func:`decode_batch` then decodes the JPEG bytes with ``decode_jpeg(device=...)`` (EXIF
orientation not applied, as on the CPU), moves the CPU-decoded images to the device, and applies
:class:`bench.data.transforms.InputTransform`'s resize and normalisation on the device.

Numbers: nvJPEG's IDCT and the device's resize arithmetic are not bit-identical to libjpeg-turbo
and the CPU resize, so a GPU-decoded run can differ from a CPU one in the last bits of the input
(and rarely in a box); the run's manifest records ``decode``. On the CPU, the same functions
(``device='cpu'``, libjpeg-turbo through torchvision) give tensors identical to ``EvalImages``
(tested). An image the device decoder refuses is retried with libjpeg-turbo on the CPU before it
becomes a failed record.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec (a DeprecationWarning);
they still work, and moving to TorchCodec's GPU JPEG decoder is a change of this module only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from bench.data.dataset import GTImage
from bench.runtime import BenchError
from bench.data.transforms import (
    MAX_PIXELS,
    InputTransform,
    check_image_file,
    decode_rgb,
    failure_reason,
)

__all__ = ["DecodeSettingError", "DecoderUnavailable", "EncodedImages", "collate_encoded", "decode_batch", "decode_jpeg_rgb",
           "decoder_available", "resolve_decode", "transform_chw"]


class DecodeSettingError(BenchError, ValueError):
    """``--decode`` asks for something this run cannot do."""


def resolve_decode(decode: str, device: str) -> str:
    """``'auto'`` -> ``'cuda'`` when the run's device is CUDA, else ``'cpu'``; others as given.

    ``'cuda'`` needs a CUDA device for the run (the decoded images are already there)."""
    if decode not in ("auto", "cpu", "cuda"):
        raise DecodeSettingError(f"decode must be 'auto', 'cpu' or 'cuda', got {decode!r}")
    if decode == "auto":  # the GPU decoder when there is one (torchvision still ships decode_jpeg)
        return "cuda" if str(device).startswith("cuda") and decoder_available() else "cpu"
    if decode == "cuda" and not str(device).startswith("cuda"):
        raise DecodeSettingError("--decode cuda needs --device cuda (the images are decoded on the GPU the model runs on)")
    return decode


def _plain_jpeg(path: Path, max_pixels: int) -> tuple[bool, int, int]:
    """``(device-decodable, width, height)`` from the header; raises ImageDecodeError on refusal."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                fmt, mode = img.format, img.mode
                progressive = bool(img.info.get("progressive") or img.info.get("progression"))
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return False, 0, 0  # let the CPU decoder give its exact reason
    if width < 1 or height < 1 or width * height > max_pixels:
        return False, width, height  # the CPU decoder refuses it with its message
    return fmt == "JPEG" and mode in ("RGB", "L") and not progressive, width, height


class EncodedImages(Dataset):
    """The images of a val set as encoded JPEG bytes where the device can decode them.

    Item ``i`` is a dict: ``index`` (position in the val set), ``data`` (1-D uint8 tensor of the
    file, or None), ``rgb`` (``(3, H, W)`` uint8 tensor decoded on the CPU, or None),
    ``width``/``height`` (original pixels, 0 when failed) and ``error`` ("" or the reason).
    Exactly one of ``data`` / ``rgb`` is set when ``error`` is empty.
    """

    def __init__(self, images: Sequence[GTImage], indices: Sequence[int], max_pixels: int = MAX_PIXELS):
        self.images = images
        self.indices = list(indices)
        self.max_pixels = int(max_pixels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        path = Path(self.images[index].path)
        item: dict[str, Any] = {"index": index, "data": None, "rgb": None, "width": 0, "height": 0, "error": ""}
        try:
            check_image_file(path)
            plain, width, height = _plain_jpeg(path, self.max_pixels)
            if plain:
                raw = path.read_bytes()
                if raw.rstrip(b"\0").endswith(b"\xff\xd9"):  # complete: ends with the EOI marker
                    item.update(data=torch.frombuffer(bytearray(raw), dtype=torch.uint8), width=width, height=height)
                    return item
            rgb = decode_rgb(path, max_pixels=self.max_pixels)  # the CPU policy, exactly
            item.update(rgb=torch.from_numpy(rgb).permute(2, 0, 1), width=rgb.shape[1], height=rgb.shape[0])
        except Exception as exc:  # every failure becomes a visible 'failed' record
            item["error"] = failure_reason(exc, path)
        return item


def collate_encoded(items: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader ``collate_fn`` for :class:`EncodedImages`: lists (images differ in size),
    ``index``/``width``/``height`` as int64 tensors like the default collate gives."""
    out: dict[str, Any] = {key: [it[key] for it in items] for key in ("data", "rgb", "error")}
    for key in ("index", "width", "height"):
        out[key] = torch.as_tensor([it[key] for it in items], dtype=torch.int64)
    return out


def transform_chw(transform: InputTransform, chw: torch.Tensor) -> torch.Tensor:
    """:class:`InputTransform` on a ``(3, H, W)`` uint8 tensor, on the tensor's device."""
    resized = TF.resize(chw, [transform.size, transform.size], interpolation=transform.interpolation, antialias=transform.antialias)
    mean = transform.mean.to(chw.device)
    std = transform.std.to(chw.device)
    return (resized.to(torch.float32) / 255.0 - mean) / std


#: torchvision 0.29 deprecates its image decoders (superseded by TorchCodec); this message is
#: silenced around the one call below, so `--decode cuda` warns nobody until the API is gone.
_DEPRECATION = r"The image decoding and encoding capabilities of TorchVision are deprecated"


class DecoderUnavailable(BenchError, RuntimeError):
    """torchvision no longer has ``torchvision.io.decode_jpeg`` (the ``--decode cuda`` path)."""


def decode_jpeg_rgb(data: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu") -> Any:
    """``torchvision.io.decode_jpeg(data, mode=RGB, device=device)``: the harness's only use of
    torchvision's image decoders (deprecated since torchvision 0.29), imported here and nowhere
    else, with that DeprecationWarning silenced. ``data``: 1-D uint8 tensor(s) of JPEG bytes;
    returns ``(3, H, W)`` uint8 tensor(s) on ``device``.

    Raises:
        DecoderUnavailable: torchvision has removed the API (use ``--decode cpu``).
        RuntimeError: the decoder refuses the data (corrupt JPEG).
    """
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:
        raise DecoderUnavailable(
            f"this torchvision has no torchvision.io.decode_jpeg ({exc}); --decode cuda needs it: use --decode cpu"
        ) from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decoder_available() -> bool:
    """Whether :func:`decode_jpeg_rgb` has its torchvision API."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg  # noqa: F401
    except ImportError:
        return False
    return True


def _decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | Exception]:
    """Decode on ``device`` in one batched call; if that fails, one by one, and an image the
    device decoder refuses gets libjpeg-turbo on the CPU (torchvision's, the same decoder as
    Pillow's) before it is called corrupt."""
    if not data:
        return []
    try:
        return list(decode_jpeg_rgb(data, device))
    except RuntimeError:
        out: list[torch.Tensor | Exception] = []
        for d in data:
            try:
                out.append(decode_jpeg_rgb(d, device))
            except RuntimeError as exc:
                if device.type == "cpu":
                    out.append(exc)
                    continue
                try:
                    out.append(decode_jpeg_rgb(d).to(device))
                except RuntimeError as cpu_exc:
                    out.append(cpu_exc)
        return out


def decode_batch(batch: dict[str, Any], transform: InputTransform, device: torch.device | str) -> dict[str, Any]:
    """The engine's batch dict for a batch of :func:`collate_encoded`: ``image`` ``(B, 3, S, S)``
    float32 on ``device`` (zeros for failed images) and the ``index``/``width``/``height``/
    ``error`` of ``EvalImages`` batches. A JPEG the device cannot decode becomes a failed image."""
    device = torch.device(device)
    errors = list(batch["error"])
    widths, heights = batch["width"].clone(), batch["height"].clone()
    rows = [r for r, d in enumerate(batch["data"]) if d is not None and not errors[r]]
    decoded = dict(zip(rows, _decode_jpegs([batch["data"][r] for r in rows], device)))
    size = transform.size
    images = []
    for r, err in enumerate(errors):
        chw = decoded.get(r)
        if chw is None and batch["rgb"][r] is not None and not err:
            chw = batch["rgb"][r].to(device, non_blocking=True)
        if isinstance(chw, Exception):
            errors[r] = " ".join(f"corrupt image data (JPEG decoder: {chw})".split())
            chw = None
        if chw is None or errors[r]:
            widths[r] = heights[r] = 0
            images.append(torch.zeros(3, size, size, dtype=torch.float32, device=device))
            continue
        images.append(transform_chw(transform, chw))
    return {"index": batch["index"], "image": torch.stack(images), "width": widths, "height": heights, "error": errors}
