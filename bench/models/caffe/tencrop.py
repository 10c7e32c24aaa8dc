"""The CAM release's ten-crop heat maps (``prepare_image.m``, ``ILSVRC_generate_heatmap.m``, ``mergeTenCrop.m``).

The authors' Table 2 numbers come from this pipeline, not from one resized view:

1. :func:`prepare_image`: the whole image (RGB uint8, any size) -> BGR float, resized to 256 x 256
   with MATLAB ``imresize(..., 'bilinear')`` (antialiased when shrinking;
   :mod:`~bench.models.caffe.matlab_resize`), minus the mean: the ILSVRC-2012 mean image when given
   (:func:`load_mean_image`), else per channel B 104.007, G 116.669, R 122.679. Caffe nets take
   0-255 inputs.
2. :func:`ten_crops`: crops of the net's input size ``c`` (224; 227 for AlexNet+) at
   :func:`crop_offsets` -- MATLAB's loop order: (x, y) = (0, 0), (0, a), (a, 0), (a, a) with
   ``a = 256 - c``, then the centre at ``floor((256 - c + 1) / 2)`` (16 for 224, 15 for 227) --
   followed by the same five crops flipped left-right (crops 6-10).
3. class scores: the mean over the ten crops of the softmax outputs; the top 5 by that mean.
4. per class: each crop's CAM (features x classifier row, no bias) resized to ``c x c`` (MATLAB
   bicubic), flipped crops flipped back, placed at their offsets in a 256 x 256 frame, absolute
   values summed over the ten crops (:func:`merge_ten_crops`; ``mergeTenCrop.m`` sums the three
   identical colour copies too, a factor 3 that the normalisation removes); the frame resized to
   the original image size (MATLAB bicubic, antialiased when shrinking) and divided by its maximum.
5. boxes: the ``cam_release`` rule (:mod:`bench.core.release_boxes`). The release wrote each map as a
   JPEG (MATLAB ``imwrite``, quality 75) and ``dt_box`` read it back; :func:`tencrop_release_boxes`
   with ``jpeg=True`` repeats that round trip (Pillow's libjpeg, quality 75, grayscale, 4:4:4).

Differences that remain (see docs/caffe.md): MATLAB computed in single precision (we use float32
for the network and float64 for the resizing); MATLAB's and Pillow's JPEG codecs may round a few
pixels differently; the release's script read images with MATLAB ``imread`` (no EXIF rotation,
like the harness).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.models.caffe.io import CaffeFormatError, blob_array
from bench.models.caffe.matlab_resize import imresize
from bench.models.caffe.model import CAFFE_MEAN_BGR, CaffeCamNet
from bench.models.caffe.net import CaffeNet
from bench.core.release_boxes import (
    release_clamp,
    release_contour_rects,
    release_dt_mask,
    release_gray,
    release_masks,
    release_merge,
    release_sort,
    release_xyxy,
)

__all__ = [
    "IMAGE_DIM",
    "JPEG_QUALITY",
    "TenCropResult",
    "load_mean_image",
    "prepare_image",
    "crop_offsets",
    "ten_crops",
    "merge_ten_crops",
    "tencrop_maps",
    "jpeg_roundtrip",
    "release_boxes_from_gray",
    "tencrop_release_boxes",
    "cam_release_jpeg_rule",
    "JPEG_RULE",
    "register_jpeg_rule",
]

#: Side of the square the whole image is resized to before cropping (``IMAGE_DIM = 256``).
IMAGE_DIM = 256
#: MATLAB ``imwrite``'s default JPEG quality.
JPEG_QUALITY = 75


#: ``.mat`` mean variables and the axes that bring each to C x H x W. ``mean_data`` (the release's
#: ``ilsvrc_2012_mean.mat``, new MATLAB-Caffe) is W x H x C; ``image_mean`` (the old Caffe
#: ``ilsvrc_2012_mean.mat`` that the release's ``ILSVRC_generate_heatmap.m`` loads as ``d.image_mean``)
#: is H x W x C, subtracted from the BGR image before MATLAB's ``permute(im, [2 1 3])``. Both BGR.
MAT_MEAN_LAYOUTS: dict[str, tuple[int, int, int]] = {"mean_data": (2, 1, 0), "image_mean": (2, 0, 1)}


def load_mean_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The mean image as ``float32 (3, 256, 256)``, BGR, rows x columns (Caffe's C x H x W).

    Accepted files: ``.mat`` (``mean_data``, W x H x C BGR as the new MATLAB-Caffe wants it, or the
    old file's ``image_mean``, H x W x C BGR; each transposed by its own layout,
    :data:`MAT_MEAN_LAYOUTS`), ``.npy`` (Caffe's Python
    ``ilsvrc_2012_mean.npy``, (3, 256, 256) BGR) or ``.binaryproto`` (Caffe's
    ``imagenet_mean.binaryproto``, a BlobProto (1, 3, 256, 256) BGR).

    Raises:
        FileNotFoundError: missing file.
        CaffeFormatError: unknown extension or not a (3, 256, 256) mean.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mean image not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        from scipy.io import loadmat

        data = loadmat(path)
        keys = [k for k in MAT_MEAN_LAYOUTS if k in data]
        if not keys:
            raise CaffeFormatError(f"{path}: no 'mean_data' (or 'image_mean') variable")
        mean = np.asarray(data[keys[0]], dtype=np.float32).transpose(MAT_MEAN_LAYOUTS[keys[0]])  # -> C x H x W
    elif suffix == ".npy":
        mean = np.load(path, allow_pickle=False).astype(np.float32)
    elif suffix == ".binaryproto":
        from bench.models.caffe import schema

        blob = schema.BlobProto()
        blob.ParseFromString(path.read_bytes())
        mean = blob_array(blob)[0]
        mean = mean.reshape(mean.shape[-3:]) if mean.ndim == 4 and mean.shape[0] == 1 else mean
    else:
        raise CaffeFormatError(f"{path}: mean image must be .mat, .npy or .binaryproto")
    if mean.shape != (3, IMAGE_DIM, IMAGE_DIM):
        raise CaffeFormatError(f"{path}: mean image has shape {mean.shape}, expected (3, {IMAGE_DIM}, {IMAGE_DIM})")
    return np.ascontiguousarray(mean)


def prepare_image(image: np.ndarray, mean_image: np.ndarray | None = None) -> Tensor:
    """``(H, W, 3)`` uint8 RGB -> the release's ``(3, 256, 256)`` float32 frame (BGR, 0-255 minus mean).

    The resize is MATLAB ``imresize(single(im), [256 256], 'bilinear')`` (float64 matrices,
    result float32), applied to the BGR image before the mean is subtracted.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    bgr = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))).to(torch.float64)
    frame = imresize(bgr, (IMAGE_DIM, IMAGE_DIM), "bilinear").to(torch.float32)
    if mean_image is None:
        mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32)[:, None, None]
    else:
        mean = torch.from_numpy(np.asarray(mean_image, dtype=np.float32))
    return frame - mean


def crop_offsets(crop: int, image_dim: int = IMAGE_DIM) -> list[tuple[int, int]]:
    """0-based ``(y, x)`` top-left corners of crops 1-5 in MATLAB's order (crops 6-10: the same, flipped)."""
    if not 0 < crop <= image_dim:
        raise ValueError(f"crop {crop} must be in [1, {image_dim}]")
    a = image_dim - crop
    centre = (image_dim - crop + 1) // 2  # MATLAB: floor(indices(2) / 2) + 1, 1-based
    return [(0, 0), (a, 0), (0, a), (a, a), (centre, centre)]


def ten_crops(frame: Tensor, crop: int) -> Tensor:
    """``(C, 256, 256)`` -> ``(10, C, crop, crop)``: the five crops, then each flipped left-right."""
    crops = [frame[:, y : y + crop, x : x + crop] for y, x in crop_offsets(crop, frame.shape[-1])]
    five = torch.stack(crops)
    return torch.cat([five, five.flip(-1)])


def merge_ten_crops(crop_maps: Tensor, image_dim: int = IMAGE_DIM) -> Tensor:
    """``(..., 10, c, c)`` crop maps -> ``(..., image_dim, image_dim)``: ``sum |map|`` at each crop's place.

    Maps 6-10 belong to flipped crops and are flipped back before placing (``mergeTenCrop.m``).
    """
    c = crop_maps.shape[-1]
    frame = crop_maps.new_zeros((*crop_maps.shape[:-3], image_dim, image_dim))
    for i, (y, x) in enumerate(crop_offsets(c, image_dim)):
        frame[..., y : y + c, x : x + c] += crop_maps[..., i, :, :].abs()
        frame[..., y : y + c, x : x + c] += crop_maps[..., i + 5, :, :].flip(-1).abs()
    return frame


@dataclass(frozen=True)
class TenCropResult:
    """One image through the ten-crop pipeline.

    Attributes:
        top_classes: ``(k,)`` int64, classes by decreasing mean softmax.
        top_scores: ``(k,)`` float32, their mean softmax over the ten crops.
        map_classes: ``(m,)`` int64, the classes in ``maps`` (the first ``map_ranks`` of
            ``top_classes``, then the extras).
        maps: ``(m, H, W)`` float32 heat maps at the original size, each divided by its maximum
            (all zero if the map is zero).
    """

    top_classes: np.ndarray
    top_scores: np.ndarray
    map_classes: np.ndarray
    maps: np.ndarray


def _cam_net(model: Any) -> CaffeCamNet:
    if isinstance(model, CaffeNet):
        model = CaffeCamNet(model)
    elif not isinstance(model, CaffeCamNet):
        model = getattr(model, "net", None)
    if not isinstance(model, CaffeCamNet):
        raise TypeError("tencrop_maps needs a Caffe network (CaffeNet, or a BenchModel built from a Caffe model)")
    if model.head is None:
        raise CaffeFormatError("this Caffe network has no GAP head; the ten-crop CAM pipeline needs one")
    return model


@torch.no_grad()
def tencrop_maps(
    model: Any,
    image: np.ndarray,
    *,
    mean_image: np.ndarray | None = None,
    top_k: int = 5,
    map_ranks: int | None = None,
    extra_classes: tuple[int, ...] = (),
    device: str | torch.device = "cpu",
) -> TenCropResult:
    """The release's ten-crop heat maps of one image (steps 1-4 of the module docstring).

    Args:
        model: a :class:`~bench.models.caffe.net.CaffeNet` or a Caffe ``BenchModel``.
        image: ``(H, W, 3)`` uint8 RGB (as :func:`bench.data.transforms.decode_rgb` returns).
        mean_image: ``(3, 256, 256)`` BGR mean (:func:`load_mean_image`); None: per-channel mean.
        top_k: how many classes to rank (the release: 5).
        map_ranks: maps for the first ``map_ranks`` ranked classes (default: all ``top_k``).
        extra_classes: classes whose maps are wanted too (e.g. the GT class for GT-known).
        device: where the network runs (it is moved there).
    """
    net = _cam_net(model).to(device)
    caffe = net.caffe
    crop = int(caffe.arch["input"]["shape"][1])
    frame = prepare_image(image, mean_image).to(device)
    crops = ten_crops(frame, crop)
    scores, features = caffe.forward_blobs(crops, capture=net.head[0])
    probs = scores.float().softmax(dim=1).mean(dim=0)
    top_scores, top_classes = probs.topk(min(top_k, probs.numel()))
    ranked = top_classes[: top_k if map_ranks is None else map_ranks]
    classes = torch.cat([ranked, torch.as_tensor(extra_classes, dtype=torch.long, device=device)])
    weight = net.cam_classifier()[0]
    cams = torch.einsum("nkhw,mk->mnhw", features.float(), weight[classes].float())  # (m, 10, h, w)
    cams = imresize(cams.double(), (crop, crop), "bicubic")
    merged = merge_ten_crops(cams)
    height, width = image.shape[:2]
    maps = imresize(merged, (height, width), "bicubic")
    peak = maps.amax(dim=(1, 2), keepdim=True)
    maps = torch.where(peak > 0, maps / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(maps))
    return TenCropResult(
        top_classes=top_classes.cpu().numpy().astype(np.int64),
        top_scores=top_scores.cpu().numpy().astype(np.float32),
        map_classes=classes.cpu().numpy().astype(np.int64),
        maps=maps.float().cpu().numpy(),
    )


def jpeg_roundtrip(gray: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Encode an 8-bit grayscale map as JPEG (``quality``) and decode it again (Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def release_boxes_from_gray(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """The release's ``[loose, tight]`` boxes ``int64 (2, 4)`` of an 8-bit map (steps (b)-(g) of ``cam_release``).

    What ``dt_box`` does with the JPEG it reads. ``degenerate`` is True when no pixel exceeds the
    lowest threshold (possible after a JPEG round trip): both boxes are then the whole image.
    """
    height, width = gray.shape
    whole = np.array([[0, 0, width - 1, height - 1]] * 2, dtype=np.int64)
    rects = [release_contour_rects(release_dt_mask(fg))[0] for fg in release_masks(gray)]
    rects = np.concatenate(rects) if rects else np.zeros((0, 4), dtype=np.int64)
    if len(rects) == 0:
        return whole, True
    kept = release_merge(release_sort(release_clamp(rects, height, width))[0])
    boxes = release_xyxy(kept)
    if len(boxes) == 0:
        return whole, True
    return np.stack([boxes[0], boxes[1] if len(boxes) > 1 else boxes[0]]), False


def tencrop_release_boxes(heat_map: np.ndarray, jpeg: bool = False, quality: int = JPEG_QUALITY) -> tuple[np.ndarray, bool]:
    """``cam_release`` boxes ``[loose, tight]`` of one ten-crop map; ``jpeg``: the release's JPEG round trip first."""
    if not float(np.max(heat_map)) > 0.0:
        height, width = heat_map.shape
        return np.array([[0, 0, width - 1, height - 1]] * 2, dtype=np.int64), True
    gray = release_gray(heat_map)
    if jpeg:
        gray = jpeg_roundtrip(gray, quality)
    return release_boxes_from_gray(gray)


def cam_release_jpeg_rule(cam: np.ndarray, thresholds: Any, connectivity: int = 8) -> tuple[np.ndarray, bool]:
    """``cam_release`` through the release's JPEG file, in :class:`bench.core.boxes.BoxRule`'s signature.

    Like :func:`bench.core.release_boxes.cam_release_rule`: ``T`` thresholds ask for the first
    ``T`` of ``[loose, tight]`` (their values are not used); connectivity must be 8.
    """
    ts = [float(t) for t in thresholds]
    if len(ts) not in (1, 2):
        raise ValueError(f"cam_release yields [loose, tight]: ask for 1 or 2 boxes, got {len(ts)} thresholds")
    if connectivity != 8:
        raise ValueError(f"cam_release traces 8-connected contours; connectivity must be 8, got {connectivity!r}")
    boxes, degenerate = tencrop_release_boxes(cam, jpeg=True)
    return boxes[: len(ts)].copy(), degenerate


#: Name of :func:`cam_release_jpeg_rule` in :data:`bench.core.boxes.BOX_RULES` (registered by
#: :func:`register_jpeg_rule`; not a protocol choice: a protocol says ``rule = "cam_release"`` and
#: ``jpeg_roundtrip = true``).
JPEG_RULE = "cam_release_jpeg"


def register_jpeg_rule() -> str:
    """Register :func:`cam_release_jpeg_rule` in the box-rule registry (idempotent); returns its name."""
    from bench.core.boxes import BOX_RULES, BoxRule

    if JPEG_RULE not in BOX_RULES:
        BOX_RULES[JPEG_RULE] = BoxRule(
            name=JPEG_RULE,
            boxes=cam_release_jpeg_rule,
            description="cam_release after the release's JPEG round trip (8-bit map written at quality 75 and read back)",
        )
    return JPEG_RULE
