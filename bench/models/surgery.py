"""Networks built on torchvision backbones: the CAM paper's GAP/GMP "surgery" nets, and
torchvision's published ImageNet classifiers wrapped to expose their last feature map.

Every network here implements the small protocol :class:`bench.models.registry.BenchModel`
relies on (docs/protocol.md):

* ``forward_cam(x)``: ``x`` ``(B, 3, S, S)`` normalised input -> ``(logits (B, C),
  features (B, K, h, w) | None)``; ``features`` is the map the CAM is built from (``None``
  for fully-connected heads, where CAM does not apply);
* ``cam_classifier()`` -> ``(W (C, K), b (C,))`` with ``logits == W @ pool(features) + b``,
  ``pool`` the spatial mean (GAP) or max (GMP); raises :class:`CamNotApplicable` for fc heads;
* ``weights_module()``: the module whose ``state_dict()`` layout a weights file has (for
  published nets the torchvision model itself, so torchvision's files load unchanged);
* ``ignored_weight_prefixes``: keys of a weights file that are legitimately not part of the
  inference graph (GoogLeNet's training-only auxiliary classifiers).

Surgery nets (CAM paper §3.1; docs/protocol.md): the torchvision backbone cut after the
given layer, then ``Conv2d(K_in, 1024, 3, stride 1, pad 1) + ReLU``, then GAP or GMP, then
``Linear(1024, 1000)``. Feature grids at 224x224: AlexNet 13x13, VGG16 14x14, GoogLeNet 14x14.

``AlexNet*-GAP`` adds two 3x3 conv + ReLU layers before the 1024-unit conv. The paper does not
give their width; we use 512 units each (conv5's 256 -> 512 -> 512 -> 1024), i.e. the width
doubles once and then the 1024-unit CAM layer doubles it again, keeping the extra layers far
cheaper than the CAM layer (2.4 M parameters for the two of them).

GoogLeNet: torchvision's ImageNet GoogLeNet weights were converted from a model trained on
inputs normalised as ``(x - 0.5) / 0.5``; torchvision therefore builds it with
``transform_input=True``, which maps ImageNet-mean/std-normalised input to that
normalisation. Both the published ``googlenet`` and the surgery ``googlenet_gap/gmp`` (whose
backbone carries those weights) apply the same transform, so the harness feeds every
torchvision model the same ImageNet-normalised tensor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal

import torch
import torchvision.models as tvm
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from bench.models.sources import apply_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CAM_CHANNELS",
    "ALEXNET_STAR_EXTRA_CHANNELS",
    "CamNotApplicable",
    "imagenet_to_half_normalization",
    "SurgeryNet",
    "alexnet_surgery",
    "vgg16_surgery",
    "googlenet_surgery",
    "AlexNetFC",
    "VGG16FC",
    "GoogLeNetGAP",
    "ResNet50GAP",
]

#: ImageNet channel mean / std of RGB in [0, 1] (torchvision's normalisation).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Units of the CAM conv layer added by the surgery (paper: 1024).
CAM_CHANNELS = 1024
#: Widths of AlexNet*-GAP's two extra 3x3 conv layers (not given in the paper; our choice).
ALEXNET_STAR_EXTRA_CHANNELS: tuple[int, int] = (512, 512)

Pooling = Literal["gap", "gmp"]


class CamNotApplicable(TypeError):
    """The network ends in fully connected layers: no (W, features) pair gives a CAM."""


def imagenet_to_half_normalization(x: Tensor) -> Tensor:
    """Re-normalise ImageNet-normalised input to ``(raw - 0.5) / 0.5``.

    Exactly torchvision GoogLeNet's ``transform_input`` (same arithmetic, same order):
    channel c becomes ``x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5``.

    Args:
        x: ``(B, 3, H, W)``, ``(raw - IMAGENET_MEAN) / IMAGENET_STD`` with raw RGB in [0, 1].

    Returns:
        ``(B, 3, H, W)`` equal to ``(raw - 0.5) / 0.5``.
    """
    chans = [
        torch.unsqueeze(x[:, c], 1) * (IMAGENET_STD[c] / 0.5) + (IMAGENET_MEAN[c] - 0.5) / 0.5
        for c in range(3)
    ]
    return torch.cat(chans, 1)


def _init_conv_(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class PooledCamHead(nn.Module):
    """The GAP/GMP head shared by the paper's surgery nets and the demo nets.

    A subclass defines ``cam_features(x) -> F (B, K, h, w)`` and has ``self.pooling`` ('gap' or
    'gmp') and ``self.fc`` (``nn.Linear(K, C)``); this gives the CAM interface: logits =
    ``fc(mean_xy F)`` (GAP) or ``fc(max_xy F)`` (GMP), classifier ``(fc.weight, fc.bias)``, and the
    module itself as the checkpoint layout.
    """

    pooling: str
    fc: nn.Linear

    def cam_features(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, 3, S, S)`` normalised -> ``(logits (B, C), F (B, K, h, w))``."""
        f = self.cam_features(x)
        pooled = f.mean(dim=(2, 3)) if self.pooling == "gap" else f.amax(dim=(2, 3))
        return self.fc(pooled), f

    def forward(self, x: Tensor) -> Tensor:
        """Logits only, ``(B, C)``."""
        return self.forward_cam(x)[0]

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (C, K), b (C,))`` of the final linear layer."""
        return self.fc.weight, self.fc.bias

    def weights_module(self) -> nn.Module:
        """Checkpoints are this module's ``state_dict()``."""
        return self


class SurgeryNet(PooledCamHead):
    """A CAM paper network: torchvision backbone cut + [extra convs] + conv 1024 + GAP/GMP + FC.

    Sub-modules (the checkpoint layout, ``state_dict()`` keys):

    * ``backbone.*``: the kept torchvision layers, with torchvision's own key names below
      ``backbone.`` (torchvision key = ``backbone_source_prefix`` + key within ``backbone``);
    * ``extra.*``: AlexNet*-GAP's two extra conv layers (empty ``Sequential`` otherwise);
    * ``cam_conv.*``: ``Conv2d(K_in, 1024, 3, 1, 1)`` (followed by ReLU);
    * ``fc.*``: ``Linear(1024, num_classes)``.

    Args:
        backbone: the cut torchvision layers, ``(B, 3, S, S) -> (B, backbone_channels, h, w)``.
        backbone_channels: channels of the backbone output.
        pooling: ``'gap'`` (spatial mean) or ``'gmp'`` (spatial max).
        backbone_source_prefix: prefix of the backbone keys in torchvision's state dict
            (``'features.'`` for AlexNet/VGG, ``''`` for GoogLeNet).
        extra: optional layers between backbone and CAM conv, ``-> (B, extra_channels, h, w)``.
        extra_channels: output channels of ``extra`` (required with ``extra``).
        transform_input: apply :func:`imagenet_to_half_normalization` first (GoogLeNet).
        num_classes: classifier outputs (1000 for ImageNet).

    The new layers (``extra``, ``cam_conv``, ``fc``) are freshly initialised: convs with
    Kaiming-normal (fan-out, ReLU) weights and zero bias, ``fc`` with N(0, 0.01) weights and
    zero bias.
    """

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: nn.Module,
        backbone_channels: int,
        pooling: Pooling,
        *,
        backbone_source_prefix: str,
        extra: nn.Sequential | None = None,
        extra_channels: int | None = None,
        transform_input: bool = False,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if pooling not in ("gap", "gmp"):
            raise ValueError(f"pooling must be 'gap' or 'gmp', got {pooling!r}")
        if (extra is None) != (extra_channels is None):
            raise ValueError("extra and extra_channels go together")
        self.pooling: Pooling = pooling
        self.transform_input = transform_input
        self.backbone_source_prefix = backbone_source_prefix
        self.backbone = backbone
        self.extra = extra if extra is not None else nn.Sequential()
        in_ch = extra_channels if extra_channels is not None else backbone_channels
        self.cam_conv = nn.Conv2d(in_ch, CAM_CHANNELS, kernel_size=3, stride=1, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(CAM_CHANNELS, num_classes)
        for m in self.extra.modules():
            if isinstance(m, nn.Conv2d):
                _init_conv_(m)
        _init_conv_(self.cam_conv)
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def cam_features(self, x: Tensor) -> Tensor:
        """``x`` ``(B, 3, S, S)`` ImageNet-normalised -> ``F (B, 1024, h, w)`` (the 1024-unit conv + ReLU)."""
        if self.transform_input:
            x = imagenet_to_half_normalization(x)
        return self.relu(self.cam_conv(self.extra(self.backbone(x))))

    def load_backbone_state_dict(
        self, tv_state_dict: Mapping[str, Tensor], *, origin: str, model_name: str
    ) -> None:
        """Load the backbone from a full torchvision ImageNet state dict.

        Keys ``backbone_source_prefix + k`` for every key ``k`` of ``self.backbone`` are taken;
        the rest of the file (the dropped layers and classifier) is ignored. Every backbone
        key must be present with the right shape.

        Raises:
            WeightsMismatch: naming ``origin`` and the torchvision keys missing / mis-shaped.
        """
        p = self.backbone_source_prefix
        own = self.backbone.state_dict()
        sub = {k: tv_state_dict[p + k] for k in own if p + k in tv_state_dict}
        apply_state_dict(self.backbone, sub, origin=origin, model_name=model_name)


def _check_pooling(pooling: str) -> Pooling:
    if pooling not in ("gap", "gmp"):
        raise ValueError(f"pooling must be 'gap' or 'gmp', got {pooling!r}")
    return pooling  # type: ignore[return-value]


def alexnet_surgery(pooling: Pooling, *, star: bool = False) -> SurgeryNet:
    """AlexNet-GAP / AlexNet-GMP / AlexNet*-GAP (``star=True``).

    Backbone = torchvision ``alexnet.features[:12]`` (conv1 ... conv5 + ReLU; pool5 dropped):
    ``(B, 3, 224, 224) -> (B, 256, 13, 13)``. ``star`` adds two 3x3 (stride 1, pad 1) conv +
    ReLU layers of :data:`ALEXNET_STAR_EXTRA_CHANNELS` units before the CAM conv.
    """
    pooling = _check_pooling(pooling)
    backbone = tvm.AlexNet().features[:12]
    extra: nn.Sequential | None = None
    extra_ch: int | None = None
    if star:
        c1, c2 = ALEXNET_STAR_EXTRA_CHANNELS
        extra = nn.Sequential(
            nn.Conv2d(256, c1, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
        )
        extra_ch = c2
    return SurgeryNet(
        backbone, 256, pooling, backbone_source_prefix="features.", extra=extra, extra_channels=extra_ch
    )


def vgg16_surgery(pooling: Pooling) -> SurgeryNet:
    """VGGnet-GAP / VGG16-GMP.

    Backbone = torchvision ``vgg16.features[:30]`` (conv1_1 ... conv5_3 + ReLU; pool5 dropped):
    ``(B, 3, 224, 224) -> (B, 512, 14, 14)``.
    """
    pooling = _check_pooling(pooling)
    backbone = tvm.vgg.make_layers(tvm.vgg.cfgs["D"], batch_norm=False)[:30]
    return SurgeryNet(backbone, 512, pooling, backbone_source_prefix="features.")


_GOOGLENET_KEEP = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2",
    "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e",
)  # fmt: skip


def googlenet_surgery(pooling: Pooling, *, init_weights: bool = True) -> SurgeryNet:
    """GoogLeNet-GAP / GoogLeNet-GMP.

    Backbone = torchvision GoogLeNet up to and including ``inception4e`` (``maxpool4``,
    ``inception5a/5b`` and the classifier dropped): ``(B, 3, 224, 224) -> (B, 832, 14, 14)``,
    with the ``transform_input`` re-normalisation applied first (see module docstring).

    Args:
        init_weights: torchvision's truncated-normal init of the backbone (wasted work when
            weights are loaded over it right after).
    """
    pooling = _check_pooling(pooling)
    g = tvm.GoogLeNet(aux_logits=False, transform_input=False, init_weights=init_weights)
    backbone = nn.Sequential(OrderedDict((n, getattr(g, n)) for n in _GOOGLENET_KEEP))
    return SurgeryNet(backbone, 832, pooling, backbone_source_prefix="", transform_input=True)


# --------------------------------------------------------------------------- published nets


class AlexNetFC(tvm.AlexNet):
    """torchvision AlexNet as published (fully connected head: CAM does not apply)."""

    ignored_weight_prefixes: tuple[str, ...] = ()

    def forward_cam(self, x: Tensor) -> tuple[Tensor, None]:
        """``x`` ``(B, 3, 224, 224)`` -> ``(logits (B, 1000), None)``."""
        return self.forward(x), None

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        raise CamNotApplicable("AlexNet ends in fully connected layers: CAM does not apply")

    def weights_module(self) -> nn.Module:
        return self


class VGG16FC(tvm.VGG):
    """torchvision VGG16 (no BN) as published (fully connected head: CAM does not apply)."""

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(self, *, init_weights: bool = True) -> None:
        super().__init__(tvm.vgg.make_layers(tvm.vgg.cfgs["D"], batch_norm=False), init_weights=init_weights)

    def forward_cam(self, x: Tensor) -> tuple[Tensor, None]:
        """``x`` ``(B, 3, 224, 224)`` -> ``(logits (B, 1000), None)``."""
        return self.forward(x), None

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        raise CamNotApplicable("VGG16 ends in fully connected layers: CAM does not apply")

    def weights_module(self) -> nn.Module:
        return self


class GoogLeNetGAP(tvm.GoogLeNet):
    """torchvision GoogLeNet as published: GAP over ``inception5b`` (1024 x 7 x 7 at 224).

    Built with ``transform_input=True`` (as torchvision does for its ImageNet weights) and
    without the auxiliary classifiers, which only act in training; their keys
    (``aux1.*``, ``aux2.*``, present in torchvision's weights file) are ignored on load.
    """

    ignored_weight_prefixes: tuple[str, ...] = ("aux1.", "aux2.")

    def __init__(self, *, init_weights: bool = True) -> None:
        super().__init__(aux_logits=False, transform_input=True, init_weights=init_weights)

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, 3, 224, 224)`` -> ``(logits (B, 1000), F (B, 1024, 7, 7))``."""
        x = self._transform_input(x)
        for name in _GOOGLENET_KEEP:
            x = getattr(self, name)(x)
        x = self.maxpool4(x)
        f = self.inception5b(self.inception5a(x))
        pooled = torch.flatten(self.avgpool(f), 1)
        return self.fc(self.dropout(pooled)), f

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (1000, 1024), b (1000,))``."""
        return self.fc.weight, self.fc.bias

    def weights_module(self) -> nn.Module:
        return self


class ResNet50GAP(tvm.ResNet):
    """torchvision ResNet-50 as published: GAP over ``layer4`` (2048 x 7 x 7 at 224)."""

    ignored_weight_prefixes: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])

    def forward_cam(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, 3, 224, 224)`` -> ``(logits (B, 1000), F (B, 2048, 7, 7))``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(f), 1)), f

    def cam_classifier(self) -> tuple[Tensor, Tensor]:
        """``(W (1000, 2048), b (1000,))``."""
        return self.fc.weight, self.fc.bias

    def weights_module(self) -> nn.Module:
        return self

