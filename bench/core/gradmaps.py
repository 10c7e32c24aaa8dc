"""Localization maps for any network, batched, on the model's device: CAM and gradient maps.

``localization_maps(model, images, classes, method, layer=None) -> (B, k, h, w)`` with

* ``'cam'`` -- Zhou et al. 2016: :func:`bench.core.cam.class_activation_maps` of the features the
  :class:`~bench.models.BenchModel` returns (GAP/GMP heads only; fc heads raise
  :class:`~bench.models.CamNotApplicable`). No gradients.
* ``'backprop'`` -- Simonyan et al. 2014, class saliency: ``max_channel |d S_c / d x|`` at input
  resolution ``(S, S)``, ``S_c`` the class's pre-softmax logit.
* ``'gradcam'`` -- Selvaraju et al. 2017: ``ReLU(sum_k alpha_k A_k)`` with
  ``alpha_k = mean_xy d S_c / d A_k(x, y)`` on a layer's activation ``A`` (B, K, h, w).
* ``'gradcampp'`` -- Chattopadhyay et al. 2018, closed form as in the common implementation
  (``pytorch-grad-cam``): with ``g = d S_c / d A``,
  ``a = g^2 / (2 g^2 + sum_xy(A_k) g^3 + eps)`` (0 where ``g == 0``), ``eps = 1e-6``,
  ``w_k = sum_xy ReLU(g) * a``, map ``= ReLU(sum_k w_k A_k)``. The paper differentiates
  ``Y = exp(S_c)``; for a network piecewise linear in ``A`` the higher derivatives of ``Y`` are
  ``exp(S_c) g^2`` and ``exp(S_c) g^3``, the ``exp`` cancels in ``a`` and leaves one positive
  factor ``exp(S_c)`` on the map, which this form drops ("exp-free"). Maps are therefore
  equal to the paper's up to a positive per-map scale, which no box rule sees.

Layer (Grad-CAM/Grad-CAM++): ``layer=None`` takes, for GAP/GMP nets, the feature map the model
returns (the CAM layer, so Grad-CAM is comparable with CAM: for a GAP head
``alpha_k = W[c, k] / (h w)`` and Grad-CAM ``= ReLU(CAM) / (h w)``; for a GMP head the gradient
reaches only the max of each channel -- torch's ``amax`` splits it evenly among ties -- so
``alpha_k`` is ``W[c, k] / (h w)`` as well); for fc nets (``alexnet``, ``vgg16``) the output of
the last ``ReLU`` in the wrapped torchvision ``features`` (conv5 + ReLU: 13x13 for AlexNet,
14x14 for VGG16 at 224). ``layer='net.layer4'`` (any name of ``model.named_modules()``; a
leading ``'net.'`` may be left out) picks a module; its output is captured by a forward hook
that hands a clone downstream, so an in-place op after it (``ReLU(inplace=True)``) does not
overwrite the activation the gradients are taken for.

Gradients: the harness's engine runs under ``torch.inference_mode()``. This module switches it
off locally (``torch.inference_mode(False)`` + ``torch.enable_grad()``), copies ``images`` into a
fresh tensor that requires grad (inference tensors cannot take part in autograd) and runs one
forward plus one backward per class rank (``torch.autograd.grad`` of the batch sum of the
rank's logits: in eval mode the images of a batch do not interact, so each image gets its own
gradient). Parameter ``.grad`` fields are never touched. The model must be in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bench.core.cam import class_activation_maps
from bench.models import BenchModel, CamNotApplicable

__all__ = ["METHODS", "GRADCAMPP_EPS", "localization_maps", "default_layer", "resolve_layer"]

#: Map methods accepted by :func:`localization_maps`.
METHODS: tuple[str, ...] = ("cam", "backprop", "gradcam", "gradcampp")
#: ``eps`` in Grad-CAM++'s ``alpha`` denominator (as in the common implementation).
GRADCAMPP_EPS: float = 1e-6


def _check_inputs(model: BenchModel, images: Tensor, classes: Tensor, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, S, S), got shape {tuple(images.shape)}")
    if classes.ndim != 2 or classes.shape[0] != images.shape[0]:
        raise ValueError(
            f"classes must be (B={images.shape[0]}, k), got shape {tuple(classes.shape)}"
        )
    if classes.dtype.is_floating_point or classes.dtype.is_complex or classes.dtype == torch.bool:
        raise ValueError(f"classes must be an integer tensor, got {classes.dtype}")
    if model.training:
        raise ValueError("localization maps need the model in eval mode (call model.eval())")


def default_layer(model: BenchModel) -> str | None:
    """Name of the default Grad-CAM layer; None = the feature map the model returns (GAP/GMP).

    For fc heads: the last ``nn.ReLU`` inside ``model.net.features`` (torchvision AlexNet/VGG).

    Raises:
        ValueError: an fc net without a ``features`` module holding a ReLU (pass ``layer``).
    """
    if model.returns_features:
        return None
    features = getattr(model.net, "features", None)
    if isinstance(features, nn.Module):
        relus = [name for name, m in features.named_modules() if isinstance(m, nn.ReLU)]
        if relus:
            return f"net.features.{relus[-1]}"
    raise ValueError(
        f"model '{model.spec.name}' has an fc head and no 'features' ReLU to take Grad-CAM on; "
        "pass layer=<module name>"
    )


def resolve_layer(model: BenchModel, layer: str) -> tuple[str, nn.Module]:
    """``(full name, module)`` for ``layer`` in ``model.named_modules()`` (``'net.'`` optional)."""
    modules = dict(model.named_modules())
    for name in (layer, f"net.{layer}"):
        if name in modules and name != "":
            return name, modules[name]
    close = [n for n in modules if n.endswith(layer.split(".")[-1])][:5]
    raise ValueError(f"no module named {layer!r} in model '{model.spec.name}'; e.g. {close or list(modules)[1:6]}")


@contextmanager
def _capture(module: nn.Module, store: list[Tensor]) -> Iterator[None]:
    """Forward hook: keep ``module``'s output and send a clone downstream (in-place safe)."""

    def hook(_m: nn.Module, _inp: object, out: Tensor) -> Tensor:
        if not isinstance(out, Tensor):
            raise ValueError(f"layer output must be a tensor, got {type(out).__name__}")
        store.append(out)
        return out.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _class_scores(logits: Tensor, classes: Tensor, rank: int) -> Tensor:
    """Sum over the batch of each image's logit of ``classes[:, rank]`` (a scalar)."""
    idx = classes[:, rank : rank + 1].to(device=logits.device, dtype=torch.long)
    return logits.gather(1, idx).sum()


def _grad_weights(acts: Tensor, grads: Tensor, method: str) -> Tensor:
    """Channel weights ``(B, K)`` of Grad-CAM (spatial mean) or Grad-CAM++ (closed form)."""
    if method == "gradcam":
        return grads.mean(dim=(2, 3))
    g2 = grads * grads
    g3 = g2 * grads
    sum_a = acts.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2.0 * g2 + sum_a * g3 + GRADCAMPP_EPS)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(grads) * alpha).sum(dim=(2, 3))


def localization_maps(
    model: BenchModel,
    images: Tensor,
    classes: Tensor,
    method: str,
    layer: str | None = None,
) -> Tensor:
    """Maps of the requested classes, ``(B, k, h, w)`` float32 on the images' device.

    Args:
        model: a registry model (or any :class:`BenchModel`) in eval mode, on ``images.device``.
        images: ``(B, 3, S, S)`` normalised input (may be an inference tensor).
        classes: ``(B, k)`` integer class indices (e.g. the top-k per image, and/or the GT).
        method: ``'cam'`` | ``'backprop'`` | ``'gradcam'`` | ``'gradcampp'`` (see module docs).
        layer: Grad-CAM(++) layer name; None = :func:`default_layer`. Ignored by ``'cam'``
            and ``'backprop'``.

    Returns:
        ``'cam'``: the raw CAMs (signed, no ReLU), ``(B, k, h, w)`` at the feature grid;
        ``'backprop'``: ``(B, k, S, S)`` at input resolution, >= 0;
        ``'gradcam'``/``'gradcampp'``: ``(B, k, h, w)`` at the layer's grid, >= 0 (ReLU).
        Detached; computed in float32 (float64 if the images are float64).

    Raises:
        ValueError: bad method, shapes, layer, or a model in training mode.
        CamNotApplicable: ``'cam'`` on an fc head.
    """
    _check_inputs(model, images, classes, method)
    k = classes.shape[1]
    if method == "cam":
        if model.spec.head not in ("gap", "gmp"):
            raise CamNotApplicable(
                f"model '{model.spec.name}' has an fc head: CAM does not apply (use a gradient map)"
            )
        with torch.no_grad():
            _logits, feats = model(images)
            weight, _bias = model.classifier()
            return class_activation_maps(feats, weight.detach(), classes).detach()

    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    with torch.inference_mode(False), torch.enable_grad():
        x = images.detach().clone().requires_grad_(True)
        if method == "backprop":
            logits, _ = model(x)
            out = []
            for j in range(k):
                (g,) = torch.autograd.grad(_class_scores(logits, classes, j), x, retain_graph=j < k - 1)
                out.append(g.abs().amax(dim=1))
            return torch.stack(out, dim=1).detach()

        name = layer if layer is not None else default_layer(model)
        if name is None:
            logits, acts = model(x)
            assert acts is not None  # GAP/GMP heads return features
        else:
            _full, module = resolve_layer(model, name)
            store: list[Tensor] = []
            with _capture(module, store):
                logits, _ = model(x)
            if len(store) != 1:
                raise ValueError(f"layer {name!r} ran {len(store)} times in one forward; pick a module that runs once")
            acts = store[0]
        if acts.ndim != 4:
            raise ValueError(f"layer output must be (B, K, h, w), got shape {tuple(acts.shape)}")
        out = []
        for j in range(k):
            (g,) = torch.autograd.grad(_class_scores(logits, classes, j), acts, retain_graph=j < k - 1)
            a = acts.detach().to(dtype)
            w = _grad_weights(a, g.to(dtype), method)  # (B, K)
            out.append(torch.relu(torch.einsum("bk,bkhw->bhw", w, a)))
        return torch.stack(out, dim=1).detach()
