"""Model factories defined outside the registry, for the user-model tests (``--model tests.user_models:NAME``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.models.simplecnn import SimpleCNN, packaged_checkpoint_path

DEMO_CFG = {"input_size": (3, 128, 128), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear"}


def simplecnn_gap() -> nn.Module:
    """The demo GAP net with the shipped checkpoint, preprocessing declared the timm way."""
    net = SimpleCNN("gap")
    net.load_state_dict(torch.load(packaged_checkpoint_path("simplecnn_gap"), weights_only=True))
    net.pretrained_cfg = dict(DEMO_CFG)
    return net


def simplecnn_gap_untrained() -> nn.Module:
    """The same architecture, random init: weights come from --weights."""
    torch.manual_seed(123)
    net = SimpleCNN("gap")
    net.pretrained_cfg = dict(DEMO_CFG)
    return net


class FunctionalGMP(nn.Module):
    """Global max pooling written as torch.amax in forward (no pooling module), flatten-free."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(12, classes)

    def forward(self, x: Tensor) -> Tensor:
        f = self.body(x)
        return self.head(self.dropout(torch.amax(f, dim=(2, 3))))


class ModuleGAP(nn.Module):
    """nn.AdaptiveAvgPool2d((1, 1)) + torch.flatten + linear (the torchvision ResNet pattern);
    ``pool='max'``: nn.AdaptiveMaxPool2d(1)."""

    def __init__(self, classes: int = 6, pool: str = "avg") -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d((1, 1)) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(10, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class NormalizedHead(nn.Module):
    """A BatchNorm1d between the pooling and the linear layer: no GAP/GMP pair."""

    def __init__(self, classes: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.ReLU())
        self.bn = nn.BatchNorm1d(10)
        self.fc = nn.Linear(10, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.bn(self.features(x).mean((2, 3))))


class TinyViT(nn.Module):
    """Patch embedding, class token, one transformer block, LayerNorm, linear head on the mean patch token."""

    num_prefix_tokens = 1

    def __init__(self, classes: int = 6, dim: int = 16, patch: int = 8, size: int = 32) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (size // patch) ** 2, dim) * 0.1)
        self.blocks = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), t], 1) + self.pos_embed
        t = self.norm(self.blocks(t))
        return self.head(t[:, 1:].mean(dim=1))


def not_a_module() -> object:
    return "nope"


def module_gmp() -> nn.Module:
    return ModuleGAP(pool="max")
