"""One map producer: model + batch -> localization maps, for every method; and what a map must be.

:func:`forward` runs the network (with the run's autocast precision) and returns ``(logits,
features)``; :func:`produce_maps` turns a batch into the maps of chosen classes with the run's map
method (``cam`` from the features already computed; ``gradcam``, ``gradcampp`` and ``backprop``
through :mod:`bench.core.gradmaps`); :func:`resize_maps` brings one image's maps to its original
size by the protocol's upsample rule. The run loop (:mod:`bench.run.engine`), replay
(:mod:`bench.run.replay`) and the threshold curves all go through these functions, so a replayed
map is the run's map.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from bench.core.cam import class_activation_maps, upsample_cam

__all__ = ["AMP_DTYPES", "check_map", "autocast", "grad_context", "forward", "produce_maps", "resize_maps"]

#: ``--amp`` values and the autocast dtype of each (``off``: no autocast).
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``--amp`` (``off``, ``bf16``, ``fp16``) on ``device``."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_context(method: str) -> contextlib.AbstractContextManager:
    """The autograd mode around a scoring loop: inference mode for CAM; no_grad for gradient maps.

    Gradient maps switch gradients on locally (:mod:`bench.core.gradmaps`), which inference
    tensors cannot take part in, so their loops run under ``no_grad`` instead.
    """
    return torch.inference_mode() if method == "cam" else torch.no_grad()


def forward(model: Any, x: torch.Tensor, amp: str = "off") -> tuple[torch.Tensor, torch.Tensor | None]:
    """One forward pass under the run's autocast: ``(logits (B, C), features (B, K, h, w) or None)``."""
    with autocast(x.device, amp):
        return model(x)


def produce_maps(
    model: Any,
    x: torch.Tensor,
    classes: torch.Tensor,
    method: str,
    layer: str | None = None,
    features: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maps of ``classes (B, k)`` for the batch ``x``, float32 ``(B, k, h, w)`` on ``x.device``.

    ``method='cam'`` with ``features`` given (from :func:`forward`) is one batched einsum with the
    classifier weights, no second forward; every other case goes through
    :func:`bench.core.gradmaps.localization_maps` (its own forward and backward for gradient maps).
    ``layer`` is the Grad-CAM layer (None: the method's default). Library methods (``grad-cam:NAME``,
    ``torchcam:NAME``) go through :func:`bench.core.library_methods.library_maps` (the library's maps
    as it returns them, in float32); the model-free ``center`` model (head ``'center'``) gives
    :func:`bench.core.center.center_maps` at the input size.
    """
    if getattr(getattr(model, "spec", None), "head", None) == "center":
        from bench.core.center import center_maps

        return center_maps(x.shape[0], classes.shape[1], (x.shape[-2], x.shape[-1]), model.sigma, device=x.device)
    if ":" in method:
        from bench.core.library_methods import library_maps

        return library_maps(model, x, classes, method, layer).float()
    if method == "cam" and features is not None:
        weight, _bias = model.classifier()
        return class_activation_maps(features.float(), weight.detach(), classes)
    from bench.core.gradmaps import localization_maps

    return localization_maps(model, x, classes, method, layer).float()


def resize_maps(maps: torch.Tensor | np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """One image's maps ``(m, h, w)`` at its original ``size = (H, W)``, as a numpy array.

    Maps already ``(H, W)`` are returned as they are (float16/32/64 kept); others are resized by
    :func:`bench.core.cam.upsample_cam` with ``mode`` (the protocol's ``upsample``) and returned
    as float32.
    """
    if tuple(maps.shape[-2:]) == (int(size[0]), int(size[1])):
        return maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    tensor = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(maps))
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return upsample_cam(tensor, size, mode=mode).float().cpu().numpy()
