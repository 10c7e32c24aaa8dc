"""Train or fine-tune a model from image-level labels (``bench train``): a registry model, or any other
model reference ``bench run`` takes (``timm/NAME``, ``torchvision/NAME``, ``module:factory``...).

Boxes are never read: training sees only (image, class) pairs; the validation split is read
with the ILSVRC val readers for its labels only (top-1 accuracy at the end).

Data
    ``--data DIR`` is an ImageFolder-style training set: the first of ``DIR/train``,
    ``DIR/ILSVRC/Data/CLS-LOC/train`` (Kaggle's ImageNet layout) and ``DIR`` itself that has
    class sub-folders holding images (``<wnid>/*.JPEG``; any extension of
    :data:`bench.data.dataset.IMAGE_EXTENSIONS`, case-insensitive). ``--data generated`` means
    the default generated data set (``ensure_dataset(SynthConfig())``, generated into the
    cache on first use).

Classes
    The class index of a folder is the position of its name (a WNID) in the data's **sorted**
    synset list, the same convention as the val readers (docs/protocol.md), taken from the first of:

    1. ``DIR/LOC_synset_mapping.txt`` (Kaggle ImageNet, or any custom class list);
    2. the generated data's own list when ``DIR/dataset.json`` is a generated data set
       (``WNIDS[:classes]``, identical to its ``csv/LOC_synset_mapping.txt``);
    3. the 1000 ImageNet WNIDs, when every folder is an ImageNet WNID (so a subset of ImageNet
       trains the right rows of a 1000-way classifier);
    4. otherwise the sorted folder names themselves (plain ImageFolder).

    Every folder must be in that list, and the list must fit the model's classifier
    (``simplecnn_*`` has 6 outputs, the paper's nets 1000): label i trains output i, so a
    1000-way net trained on the 6 generated classes uses its first 6 outputs (and its val
    top-1 is still the argmax over all 1000).

Validation
    ``--val ROOT`` if given, else the generated data's ``csv`` root (``val_root(DIR)``) for a
    generated data set, else ``DIR`` itself (ImageNet with its val annotations, any of the three
    GT layouts). It is loaded with :func:`bench.data.open.open_dataset` and the training class
    list, and every image is read exactly as ``bench run`` reads it (:class:`InputTransform`):
    the val top-1 accuracy is ``100 - top1_cls_err`` of a ``bench run`` on the same root. In
    auto mode a missing val split is a warning (``val_top1: null``), an explicit ``--val`` that
    does not load is an error.

Input and augmentation (chosen for localization)
    Each training image is decoded to RGB and resized as a whole to the model's input size
    (bilinear, antialiased: the evaluation protocol's transform), then flipped horizontally
    with probability 1/2 and normalised with the model's mean/std. There is **no random
    resized crop**: crops cut objects and change their scale relative to the whole-image input
    the protocol evaluates, so the CAM would learn on a different geometry; a flip keeps the
    whole object in view. The flip of image ``i`` in epoch ``e`` is a pure function of
    ``(seed, e, i)`` (:func:`flip_decision`), so it does not depend on worker processes, ranks
    or the order in which samples are loaded.

Recipes (:func:`default_recipe`; ``--epochs``, ``--batch-size``, ``--lr`` override)
    * **Paper GAP/GMP surgery nets** (``alexnet_gap`` ... ``googlenet_gmp``), mirroring the
      CAM paper (§3.1: remove the layers after the cut, add a conv layer + GAP/GMP + a fully
      connected softmax layer, *fine-tune* on ImageNet): start from
      :func:`~bench.models.build_backbone_init` (torchvision's ImageNet backbone, fresh
      ``extra``/``cam_conv``/``fc`` layers); SGD, momentum 0.9, weight decay 5e-4, learning rate
      ``lr`` = 1e-3 for the pretrained backbone and ``10 x lr`` for the new layers (new layers
      are trained, the backbone is fine-tuned), cosine decay to 0 over all steps, batch 32,
      10 epochs.
    * **Published nets** (torchvision ``googlenet``/``resnet50``/``alexnet``/``vgg16``,
      EfficientNet-Lite): fine-tune from their published ImageNet weights; SGD, momentum 0.9,
      weight decay 5e-4, lr 1e-3 for every layer, cosine, batch 32, 10 epochs.
    * **Demo nets** ``simplecnn_gap``/``simplecnn_gmp``: from scratch (seeded random init);
      Adam (lr 1e-3, betas (0.9, 0.999), no weight decay), cosine, batch 16,
      :data:`SIMPLECNN_EPOCHS` epochs (the shipped checkpoints' recipe). Batch 16 rather than
      32: twice the updates for the same compute, which matters in a few CPU epochs
      (measured, GAP, first epoch: val top-1 34 % vs 26 % with batch 32).

    ``--weights INIT`` starts from that checkpoint instead (the whole model), same recipe.

Determinism
    :func:`seed_everything` seeds Python's ``random``, NumPy and torch; the model is built
    right after it (random init is a function of the seed); the sampler is a
    :class:`~torch.utils.data.DistributedSampler` (shuffle, ``seed``, ``set_epoch``) in every
    mode, the DataLoader gets a seeded generator and each worker seeds ``random`` / NumPy from
    its torch seed. On a CPU two runs with the same arguments (same torch build and thread
    count) give identical weights.

Distributed (``torchrun --nproc_per_node=N -m bench train ...``)
    With ``WORLD_SIZE > 1`` the process group is initialised (gloo on CPU, nccl on CUDA), the
    model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` and
    ``--batch-size`` stays the **global** batch: each rank takes ``B / N`` (B must be divisible
    by N). Rank ``r`` reads positions ``r, r + N, ...`` of the same seeded permutation, so the
    ranks' k-th batches together are exactly the k-th batch of a single-process run (when the
    number of images is divisible by N; otherwise DistributedSampler pads by repeating a few
    images). Gradients are averaged over ranks, i.e. over the global batch. BatchNorm
    statistics stay per rank (no SyncBatchNorm on CPU), so nets with BatchNorm are not
    bit-identical to a single-process run; BN-free nets agree up to float summation order.
    Rank 0 evaluates its share of the val set like every rank (counts are summed) and alone
    writes the checkpoint and its sidecar.

Output
    ``--out CKPT``: ``model.weights_module().state_dict()`` saved with ``torch.save`` (plain
    tensors, loadable with ``torch.load(..., weights_only=True)`` and by
    ``build_model(name, weights=CKPT)``), written atomically; and the sidecar ``CKPT.json``
    (:func:`sidecar_path`): model, data (roots, class list, fingerprints), recipe, epochs, seed,
    per-epoch history, final train loss, final val top-1 accuracy, the canonical command that
    reproduces the run, library versions, host, timings.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import random
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torch.utils.data import Dataset as TorchDataset
from tqdm import tqdm

from bench.data.classes import load_wnids, read_synset_mapping
from bench.data.dataset import IMAGE_EXTENSIONS, DataError, Dataset
from bench.data.open import open_dataset
from bench.data.transforms import EvalImages, InputTransform, decode_rgb
from bench.core.scoring import topk_cls_hit
from bench.runtime import RunError, atomic_write, atomic_write_bytes, dist_env, library_versions, resolve_device
from bench.models import BenchModel, ModelSpec, WeightsInfo, build_backbone_init, build_model, get_spec
from bench.models.sources import sha256_file
from bench.models.surgery import SurgeryNet

__all__ = [
    "GENERATED_DATA",
    "SIMPLECNN_EPOCHS",
    "FIRST_STEPS_RECORDED",
    "TrainError",
    "Recipe",
    "default_recipe",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "resolve_data_dir",
    "find_train_root",
    "load_train_data",
    "find_val_root",
    "flip_decision",
    "TrainImages",
    "EpochSampler",
    "seed_everything",
    "param_groups",
    "evaluate_top1",
    "sidecar_path",
    "canonical_command",
    "train",
]

#: ``--data`` value meaning the default generated data set.
GENERATED_DATA = "generated"
#: Epochs of the demo nets' recipe (the shipped checkpoints).
SIMPLECNN_EPOCHS = 6
#: How many per-step losses of the first steps the sidecar records (reproduction checks).
FIRST_STEPS_RECORDED = 10

SIDECAR_FORMAT = "wsol-bench-train/1"

_TRAIN_DIRS: tuple[str, ...] = ("train", "ILSVRC/Data/CLS-LOC/train", ".")
_SYNSET_FILE = "LOC_synset_mapping.txt"
_SYNTH_META = "dataset.json"


class TrainError(RunError):
    """Training cannot start or finish as asked (bad data folder, classes vs model, ...)."""


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """Optimisation recipe (see the module docstring for the defaults and their rationale).

    Attributes:
        optimizer: ``'sgd'`` (with momentum) or ``'adam'``.
        lr: base learning rate (the pretrained/backbone layers of a surgery net).
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 weight decay (all parameters).
        new_layer_lr_mult: learning-rate multiplier of a surgery net's new layers
            (``extra``, ``cam_conv``, ``fc``); 1 for every other model.
        epochs: passes over the training set.
        batch_size: global batch size (split evenly over distributed ranks).
        schedule: ``'cosine'`` (per step, from ``lr`` to 0 over ``epochs``) or ``'constant'``.
        init: ``'scratch'`` (seeded random init), ``'backbone'`` (ImageNet backbone + fresh
            head), ``'pretrained'`` (published weights) or ``'file'`` (``--weights INIT``).
    """

    optimizer: Literal["sgd", "adam"]
    lr: float
    momentum: float
    weight_decay: float
    new_layer_lr_mult: float
    epochs: int
    batch_size: int
    schedule: Literal["cosine", "constant"]
    init: Literal["scratch", "backbone", "pretrained", "file"]


def is_registry_name(model: str) -> bool:
    """Whether ``model`` names a registry model (else it is another model reference `bench run` takes:
    ``timm/NAME``, ``torchvision/NAME``, ``module:factory``, ``file.py:factory``, an entry point)."""
    from bench.models import MODELS

    return model in MODELS


def user_recipe(pretrained: bool) -> Recipe:
    """The recipe of a model outside the registry: fine-tuning (SGD, lr 1e-3, momentum 0.9, weight
    decay 5e-4, cosine, batch 32, 10 epochs) from its own weights, or from a random init with
    ``pretrained`` False."""
    return Recipe("sgd", 1e-3, 0.9, 5e-4, 1.0, 10, 32, "cosine", "pretrained" if pretrained else "scratch")


def _model_kind(spec: ModelSpec) -> Literal["demo", "surgery", "published"]:
    if spec.family == "simplecnn":
        return "demo"
    if spec.family.endswith("-published"):
        return "published"
    return "surgery"


def default_recipe(spec: ModelSpec) -> Recipe:
    """The default recipe of a registry model (module docstring, "Recipes")."""
    kind = _model_kind(spec)
    if kind == "demo":
        return Recipe("adam", 1e-3, 0.0, 0.0, 1.0, SIMPLECNN_EPOCHS, 16, "cosine", "scratch")
    if kind == "surgery":
        return Recipe("sgd", 1e-3, 0.9, 5e-4, 10.0, 10, 32, "cosine", "backbone")
    return Recipe("sgd", 1e-3, 0.9, 5e-4, 1.0, 10, 32, "cosine", "pretrained")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """One training run; fields map one-to-one onto ``bench train`` flags.

    ``None`` for ``epochs``/``batch_size``/``lr`` means the model's :func:`default_recipe`.
    ``data`` may be :data:`GENERATED_DATA`. ``max_steps`` (no flag; smoke tests) stops after
    that many optimizer steps while the learning-rate schedule still follows ``epochs``, so
    the first steps are exactly those of the full run.
    """

    model: str
    data: str | Path
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    workers: int = 2
    out: Path | None = None
    device: str = "cpu"
    init_weights: Path | None = None
    val: Path | None = None
    progress: bool = True
    max_steps: int | None = None
    argv: tuple[str, ...] = ()
    pretrained: bool = True  # --no-pretrained: models outside the registry start from a random init
    num_classes: int | None = None  # --num-classes: timm/ and torchvision/ models with N outputs

    def recipe(self) -> Recipe:
        """The default recipe of ``model`` with this config's overrides applied."""
        base = default_recipe(get_spec(self.model)) if is_registry_name(self.model) else user_recipe(self.pretrained)
        r = replace(
            base,
            epochs=base.epochs if self.epochs is None else int(self.epochs),
            batch_size=base.batch_size if self.batch_size is None else int(self.batch_size),
            lr=base.lr if self.lr is None else float(self.lr),
        )
        if not self.pretrained and is_registry_name(self.model):
            r = replace(r, init="scratch")
        if self.init_weights is not None:
            r = replace(r, init="file")
        problems = []
        if self.num_classes is not None and not self.model.startswith(("timm/", "torchvision/")):
            problems.append(f"--num-classes applies to timm/ and torchvision/ models only, not {self.model}")
        if r.epochs < 1:
            problems.append(f"--epochs must be >= 1, got {r.epochs}")
        if r.batch_size < 1:
            problems.append(f"--batch-size must be >= 1, got {r.batch_size}")
        if not (r.lr > 0 and math.isfinite(r.lr)):
            problems.append(f"--lr must be a positive number, got {r.lr}")
        if self.seed < 0:
            problems.append(f"--seed must be >= 0, got {self.seed}")
        if self.workers < 0:
            problems.append(f"--workers must be >= 0, got {self.workers}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1, got {self.max_steps}")
        if problems:
            raise TrainError("bad training settings: " + "; ".join(problems))
        return r


def canonical_command(config: TrainConfig, recipe: Recipe, world_size: int = 1, device: str | None = None) -> str:
    """The command that reproduces ``config`` with every recipe value explicit.

    Defaults are spelled out so the command still reproduces the run if a default changes;
    ``device`` (the resolved device, e.g. ``'cpu'`` for ``--device auto``) replaces
    ``config.device``. Under ``torchrun`` the launcher prefix with the number of processes is
    included.
    """
    parts = ["bench", "train"] if world_size == 1 else [
        "torchrun", f"--nproc_per_node={world_size}", "-m", "bench", "train"
    ]
    parts += ["--model", config.model, "--data", str(config.data)]
    parts += ["--epochs", str(recipe.epochs), "--batch-size", str(recipe.batch_size)]
    parts += ["--lr", repr(recipe.lr), "--seed", str(config.seed), "--workers", str(config.workers)]
    parts += ["--device", device or config.device]
    if config.init_weights is not None:
        parts += ["--weights", str(config.init_weights)]
    if not config.pretrained:
        parts += ["--no-pretrained"]
    if config.num_classes is not None:
        parts += ["--num-classes", str(config.num_classes)]
    if config.val is not None:
        parts += ["--val", str(config.val)]
    if config.out is not None:
        parts += ["--out", str(config.out)]
    return shlex.join(parts)


# --------------------------------------------------------------------------- data


def resolve_data_dir(data: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """``--data`` -> a folder: :data:`GENERATED_DATA` (when no such folder exists) is the
    default generated data set (generated into the cache on first use)."""
    p = Path(data).expanduser()
    if str(data) == GENERATED_DATA and not p.exists():
        from bench.data.synthetic import SynthConfig, ensure_dataset

        return ensure_dataset(SynthConfig(), progress=progress)
    if not p.is_dir():
        raise TrainError(
            f"--data {data}: not a directory; give an ImageFolder-style training set "
            f"(DIR/train/<wnid>/*.JPEG or DIR/<wnid>/*.JPEG), or '{GENERATED_DATA}' for the "
            "generated data set"
        )
    return p.absolute()


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _class_folders(folder: Path) -> dict[str, list[str]]:
    """``{sub-folder name: sorted image file names}`` for sub-folders holding images
    (hidden folders skipped)."""
    out: dict[str, list[str]] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        if e.name.startswith(".") or not e.is_dir():
            continue
        with os.scandir(e.path) as it:
            names = sorted(s.name for s in it if _is_image_name(s.name) and s.is_file())
        if names:
            out[e.name] = names
    return out


def find_train_root(root: Path) -> Path:
    """The first of ``root/train``, ``root/ILSVRC/Data/CLS-LOC/train``, ``root`` with class
    sub-folders holding images.

    Raises:
        TrainError: none has any (the message lists what was tried).
    """
    for rel in _TRAIN_DIRS:
        d = (root / rel) if rel != "." else root
        if d.is_dir() and _class_folders(d):
            return d
    tried = ", ".join(str(root / r) if r != "." else str(root) for r in _TRAIN_DIRS)
    raise TrainError(
        f"no training images under {root}: looked for class sub-folders with images "
        f"(<wnid>/*.JPEG) in {tried}"
    )


def _synth_wnids(root: Path) -> tuple[str, ...] | None:
    """The class list of a generated data set at ``root``, or None if it is not one."""
    try:
        meta = json.loads((root / _SYNTH_META).read_text(encoding="utf-8"))
        classes = meta["classes"]
        wnids = tuple(str(c["wnid"]) for c in sorted(classes, key=lambda c: int(c["index"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return wnids if wnids and list(wnids) == sorted(wnids) else None


def _resolve_classes(root: Path, folders: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """(sorted class list, where it came from); see the module docstring, "Classes"."""
    synset = root / _SYNSET_FILE
    if synset.is_file():
        return tuple(read_synset_mapping(synset)), str(synset)
    synth = _synth_wnids(root)
    if synth is not None:
        return synth, f"generated data set ({root / _SYNTH_META})"
    imagenet = load_wnids()
    if set(folders) <= set(imagenet):
        return tuple(imagenet), "ImageNet (the 1000 sorted WNIDs)"
    return tuple(sorted(folders)), "the sorted class folder names"


@dataclass(frozen=True)
class TrainData:
    """A resolved training set.

    Attributes:
        root: the ``--data`` folder.
        train_root: the folder holding the class sub-folders.
        classes: sorted class list; label i <-> ``classes[i]``.
        class_source: where the class list came from.
        samples: ``(path, label)`` per image, by class folder then file name.
    """

    root: Path
    train_root: Path
    classes: tuple[str, ...]
    class_source: str
    samples: tuple[tuple[Path, int], ...]

    def fingerprint(self) -> str:
        """SHA-256 over the class list and every (relative path, label, byte size)."""
        import hashlib

        h = hashlib.sha256()
        h.update(b"wsol-bench-train-v1\0" + "\n".join(self.classes).encode() + b"\0")
        for path, label in self.samples:
            rel = path.relative_to(self.train_root).as_posix()
            h.update(f"{rel}\0{label}\0{path.stat().st_size}\n".encode())
        return h.hexdigest()


def load_train_data(root: Path) -> TrainData:
    """Find the training images under ``root`` and label them (module docstring, "Classes").

    Raises:
        TrainError: no images, or class folders missing from the class list.
    """
    train_root = find_train_root(root)
    folders = _class_folders(train_root)
    classes, source = _resolve_classes(root, list(folders))
    index = {w: i for i, w in enumerate(classes)}
    unknown = sorted(f for f in folders if f not in index)
    if unknown:
        raise TrainError(
            f"{len(unknown)} class folder(s) of {train_root} are not in the class list from "
            f"{source}: {unknown[:12]}{' ...' if len(unknown) > 12 else ''}; rename the folders "
            "to WNIDs of that list or fix the list"
        )
    samples = tuple(
        (train_root / name / f, index[name]) for name in sorted(folders) for f in folders[name]
    )
    return TrainData(root, train_root, classes, source, samples)


def find_val_root(root: Path) -> Path:
    """Default validation root: ``val_root(root)`` for a generated data set, else ``root``."""
    if _synth_wnids(root) is not None and (root / "csv").is_dir():
        from bench.data.synthetic import val_root

        return val_root(root)
    return root


def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Whether image ``index`` is flipped in ``epoch``: a pure function of its arguments."""
    return bool(np.random.default_rng((int(seed), int(epoch), int(index))).random() < 0.5)


class TrainImages(TorchDataset):
    """Training items ``(image (3, S, S) float32, label)``, keyed by ``(epoch, index)``.

    The image is decoded, resized as a whole to ``S x S`` (the protocol's transform),
    flipped horizontally when :func:`flip_decision` says so, and normalised.
    """

    def __init__(self, samples: Sequence[tuple[Path, int]], transform: InputTransform, seed: int, *, flip: bool = True):
        self.samples = list(samples)
        self.transform = transform
        self.seed = int(seed)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        epoch, index = key
        path, label = self.samples[index]
        try:
            image = self.transform(decode_rgb(path))
        except Exception as exc:  # a training image must decode: fail loudly, naming it
            raise TrainError(f"cannot decode training image {path}: {type(exc).__name__}: {exc}") from exc
        if self.flip and flip_decision(self.seed, epoch, index):
            image = image.flip(-1)
        return image, label


class EpochSampler(Sampler[tuple[int, int]]):
    """A seeded :class:`DistributedSampler` (shuffle) whose items are ``(epoch, index)``.

    Carrying the epoch with each index lets :class:`TrainImages` draw its augmentation from
    ``(seed, epoch, index)`` even in persistent worker processes.
    """

    def __init__(self, n: int, *, world_size: int, rank: int, seed: int) -> None:
        self.inner = DistributedSampler(
            range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2**32  # base_seed (from the loader's seeded generator) + worker id
    random.seed(s)
    np.random.seed(s)


# --------------------------------------------------------------------------- model + optimiser


def _num_outputs(model: BenchModel) -> int:
    """Classifier outputs: ``out_features`` of the last ``nn.Linear`` of the network."""
    linears = [m for m in model.weights_module().modules() if isinstance(m, nn.Linear)]
    if not linears:  # pragma: no cover - every registry net ends in a Linear layer
        raise TrainError(f"cannot find the classifier of {model.spec.name}")
    return int(linears[-1].out_features)


def _build(config: TrainConfig, recipe: Recipe) -> tuple[BenchModel, WeightsInfo]:
    if not is_registry_name(config.model):  # any other reference bench run takes, resolved as bench run does
        from bench.models.resolve import ModelOptions, resolve_model

        options = ModelOptions(weights=config.init_weights, pretrained=config.pretrained, num_classes=config.num_classes, method="gradcam")
        return resolve_model(config.model, options)
    if recipe.init == "file":
        assert config.init_weights is not None
        return build_model(config.model, config.init_weights)
    if recipe.init == "scratch":
        return build_model(config.model, pretrained=False)
    if recipe.init == "backbone":
        return build_backbone_init(config.model)
    return build_model(config.model)


_NEW_LAYER_PREFIXES = ("extra.", "cam_conv.", "fc.")


def param_groups(model: BenchModel, recipe: Recipe) -> list[dict[str, Any]]:
    """Optimizer parameter groups: for a surgery net, backbone at ``lr`` and the new layers
    (``extra``, ``cam_conv``, ``fc``) at ``lr * new_layer_lr_mult``; one group otherwise.

    Each group carries ``name`` and its ``lr``; ``weight_decay`` applies to all parameters.
    """
    net = model.net
    if isinstance(net, SurgeryNet) and recipe.new_layer_lr_mult != 1.0:
        backbone, new = [], []
        for name, p in net.named_parameters():
            (new if name.startswith(_NEW_LAYER_PREFIXES) else backbone).append(p)
        return [
            {"name": "backbone", "params": backbone, "lr": recipe.lr},
            {"name": "new_layers", "params": new, "lr": recipe.lr * recipe.new_layer_lr_mult},
        ]
    return [{"name": "all", "params": list(model.parameters()), "lr": recipe.lr}]


def _optimizer(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


# --------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate_top1(
    model: BenchModel,
    valset: Dataset,
    *,
    device: torch.device,
    batch_size: int = 64,
    workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    channels_last: bool = False,
) -> tuple[int, int, int]:
    """Top-1 classification on ``valset`` (labels only, boxes unused), as ``bench run`` reads it.

    Rank ``r`` takes images ``r, r + N, ...``; counts are summed over ranks when distributed.

    Returns:
        ``(correct, scored, failed)``: images whose top-1 class (ranked as ``bench run`` ranks
        them, :func:`bench.core.scoring.topk_cls_hit`) is the GT class, images
        decoded fine, images that could not be decoded (excluded, like ``bench run``).
    """
    spec = model.spec
    transform = InputTransform(spec.input_size, spec.mean, spec.std)
    indices = list(range(rank, len(valset.images), world_size))
    loader = DataLoader(
        EvalImages(valset.images, indices, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
    )
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64)
    for batch in loader:
        x = batch["image"].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, _ = model(x)
        top1 = logits.float().softmax(dim=1).topk(1, dim=1).indices.cpu().numpy()  # the engine's ranking
        ok = torch.tensor([not e for e in batch["error"]])
        labels = [valset.images[int(i)].label for i in batch["index"]]
        correct = torch.from_numpy(topk_cls_hit(top1, labels, 1))
        counts += torch.stack([(correct & ok).sum(), ok.sum(), (~ok).sum()])
    if world_size > 1:
        counts = counts.to(device)
        dist.all_reduce(counts)
        counts = counts.cpu()
    correct, scored, failed = (int(v) for v in counts.tolist())
    return correct, scored, failed


# --------------------------------------------------------------------------- distributed


# rank, world size, local rank: bench.runtime.dist_env


# --------------------------------------------------------------------------- output


def sidecar_path(checkpoint: Path) -> Path:
    """The sidecar of a checkpoint: ``CKPT.json`` (the full file name plus ``.json``)."""
    return Path(f"{checkpoint}.json")


def _save_checkpoint(model: BenchModel, path: Path) -> None:
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.weights_module().state_dict().items()}
    atomic_write(path, lambda fh: torch.save(sd, fh))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (eval mode, CPU, contiguous memory format).
        info: the sidecar content (also written next to the checkpoint on rank 0).
        checkpoint: the checkpoint path (``None`` without ``out`` or on ranks > 0).
    """

    model: BenchModel
    info: dict[str, Any]
    checkpoint: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- training


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.model`` on ``config.data`` (module docstring), evaluate, save.

    Returns:
        :class:`TrainResult` (on every rank; only rank 0 writes files).

    Raises:
        TrainError: bad settings or data; UnknownModelError / WeightsError from the registry;
        DataError from an explicit ``--val`` root that does not load.
    """
    t_start = time.perf_counter()
    spec = get_spec(config.model) if is_registry_name(config.model) else None
    recipe = config.recipe()
    rank, world, local_rank = dist_env()
    if recipe.batch_size % world:
        raise TrainError(
            f"--batch-size {recipe.batch_size} (the global batch) must be divisible by the "
            f"number of processes ({world})"
        )
    device = torch.device(resolve_device(config.device))
    initialised_here = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    is_main = rank == 0
    try:
        return _train(config, spec, recipe, rank, world, device, is_main, t_start)
    finally:
        if initialised_here:
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    spec: ModelSpec | None,
    recipe: Recipe,
    rank: int,
    world: int,
    device: torch.device,
    is_main: bool,
    t_start: float,
) -> TrainResult:
    """The training run of :func:`train` (``spec`` None: a model reference outside the registry,
    whose spec comes from the built model)."""
    data, valset, val_note = _load_data(config, is_main)
    seed_everything(config.seed)
    model, init_info = _build(config, recipe)
    spec = model.spec
    _check_outputs(model, data)
    channels_last = True  # faster convolutions on CPU (and most GPUs); numerics are deterministic
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    per_rank_batch = recipe.batch_size // world
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader, sampler = _train_loader(config, spec, data, per_rank_batch, world, rank, device)
    total_steps = len(loader) * recipe.epochs
    optimizer = _optimizer(param_groups(model, recipe), recipe)
    scheduler = _scheduler(optimizer, recipe, total_steps)
    t_train = time.perf_counter()
    history, first_losses, step = _epochs(config, spec, recipe, model, net, loader, sampler, optimizer, scheduler,
                                          device, world, is_main, channels_last)  # fmt: skip
    train_seconds = time.perf_counter() - t_train
    del loader  # stops persistent workers before evaluation starts its own

    t_eval = time.perf_counter()
    val_counts: tuple[int, int, int] | None = None
    if valset is not None:
        val_counts = evaluate_top1(
            model, valset, device=device, batch_size=max(per_rank_batch, 64), workers=config.workers,
            rank=rank, world_size=world, channels_last=channels_last,
        )
    eval_seconds = time.perf_counter() - t_eval

    model.to(memory_format=torch.contiguous_format)
    model.cpu().eval()
    info = _sidecar(config, spec, recipe, model, init_info, data, valset, val_note, val_counts, history, first_losses,
                    step, total_steps, world, device, (train_seconds, eval_seconds, time.perf_counter() - t_start))  # fmt: skip
    checkpoint: Path | None = None
    if is_main and config.out is not None:
        checkpoint = _write_checkpoint(model, Path(config.out), info)
    if world > 1:
        dist.barrier()
    return TrainResult(model=model, info=info, checkpoint=checkpoint, history=history)


def _load_data(config: TrainConfig, is_main: bool) -> tuple[TrainData, Dataset | None, str]:
    """The train data and the validation split (labels only), resolved before training so a bad
    --val fails early; a missing auto val split is a warning and a note."""
    root = resolve_data_dir(config.data, progress=config.progress and is_main)
    data = load_train_data(root)
    val_root_path = Path(config.val).absolute() if config.val is not None else find_val_root(root)
    valset: Dataset | None
    val_note = ""
    try:
        valset = open_dataset(val_root_path, classes=list(data.classes))
    except DataError as exc:
        if config.val is not None:
            raise
        valset = None
        val_note = f"no validation split loaded from {val_root_path}: {str(exc).splitlines()[0]}"
        if is_main:
            warnings.warn(f"bench train: {val_note}; val_top1 is recorded as null", stacklevel=3)
    return data, valset, val_note


def _check_outputs(model: BenchModel, data: TrainData) -> None:
    outputs = _num_outputs(model)
    if len(data.classes) > outputs:
        hint = f" (--num-classes {len(data.classes)} builds a timm/ or torchvision/ model with that many)" if not is_registry_name(model.spec.name) else ""
        raise TrainError(
            f"model {model.spec.name} has {outputs} outputs but the data's class list ({data.class_source}) "
            f"has {len(data.classes)} classes; train a model whose classifier fits, or use data with "
            f"at most {outputs} classes{hint}"
        )


def _train_loader(config: TrainConfig, spec: ModelSpec, data: TrainData, per_rank_batch: int, world: int, rank: int,
                  device: torch.device) -> tuple[DataLoader, EpochSampler]:  # fmt: skip
    transform = InputTransform(spec.input_size, spec.mean, spec.std)
    dataset = TrainImages(data.samples, transform, config.seed)
    sampler = EpochSampler(len(dataset), world_size=world, rank=rank, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed + rank)
    loader = DataLoader(
        dataset,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=config.workers,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )
    return loader, sampler


def _scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total_steps) / total_steps))
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def _epochs(
    config: TrainConfig, spec: ModelSpec, recipe: Recipe, model: BenchModel, net: nn.Module, loader: DataLoader,
    sampler: EpochSampler, optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device, world: int,
    is_main: bool, channels_last: bool,
) -> tuple[list[dict[str, Any]], list[float], int]:  # fmt: skip
    """The optimisation loop: per-epoch history, the first steps' losses, the steps taken."""
    steps_per_epoch = len(loader)
    history: list[dict[str, Any]] = []
    first_losses: list[float] = []
    step = 0
    stopped_early = False
    for epoch in range(recipe.epochs):
        sampler.set_epoch(epoch)
        model.train()
        t_epoch = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n (this rank)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"{spec.name} epoch {epoch + 1}/{recipe.epochs}",
            unit="batch",
            disable=not (config.progress and is_main),
            leave=True,
        )
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            logits, _ = net(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if len(first_losses) < FIRST_STEPS_RECORDED:
                first_losses.append(value)
            n = len(labels)
            sums += torch.tensor([value * n, float((logits.detach().argmax(1) == labels).sum()), n], dtype=torch.float64)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if config.max_steps is not None and step >= config.max_steps:
                stopped_early = True
                break
        bar.close()
        if world > 1:
            sums = sums.to(device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        loss_sum, correct, seen = sums.tolist()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_top1": 100.0 * correct / max(seen, 1),
                "images": int(seen),
                "seconds": round(time.perf_counter() - t_epoch, 2),
            }
        )
        if stopped_early:
            break
    return history, first_losses, step


def _sidecar(
    config: TrainConfig, spec: ModelSpec, recipe: Recipe, model: BenchModel, init_info: WeightsInfo, data: TrainData,
    valset: Dataset | None, val_note: str, val_counts: tuple[int, int, int] | None, history: list[dict[str, Any]],
    first_losses: list[float], step: int, total_steps: int, world: int, device: torch.device, seconds: tuple[float, float, float],
) -> dict[str, Any]:  # fmt: skip
    """The checkpoint's sidecar (module docstring, "Output"); ``checkpoint`` is filled in on writing."""
    val_top1: float | None = None
    if val_counts is not None:
        correct, scored, _ = val_counts
        val_top1 = 100.0 * correct / scored if scored else None
    train_seconds, eval_seconds, total_seconds = seconds
    return {
        "format": SIDECAR_FORMAT,
        "model": spec.name,
        **({"reference": config.model} if config.model != spec.name else {}),
        **({"num_classes": config.num_classes} if config.num_classes is not None else {}),
        "head": spec.head,
        "family": spec.family,
        "input_size": spec.input_size,
        "num_outputs": _num_outputs(model),
        "checkpoint": None,
        "init": {"kind": recipe.init, "source": init_info.source, "path": init_info.path, "sha256": init_info.sha256},
        "data": {
            "root": str(data.root),
            "data_arg": str(config.data),
            "train_root": str(data.train_root),
            "train_images": len(data.samples),
            "classes": list(data.classes),
            "class_list_source": data.class_source,
            "train_fingerprint": data.fingerprint(),
            "dataset_sha256": _dataset_sha256(data.root),
            "val_root": str(valset.root) if valset is not None else None,
            "val_layout": valset.layout if valset is not None else None,
            "val_images": len(valset.images) if valset is not None else 0,
            "val_fingerprint": valset.fingerprint() if valset is not None else None,
            "val_note": val_note or None,
        },
        "recipe": asdict(recipe),
        "augmentation": "whole-image resize to input size (bilinear, antialias) + horizontal flip p=0.5 from (seed, epoch, index)",
        "epochs": recipe.epochs,
        "seed": config.seed,
        "batch_size": recipe.batch_size,
        "world_size": world,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "workers": config.workers,
        "steps": step,
        "steps_planned": total_steps,
        "max_steps": config.max_steps,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_train_top1": history[-1]["train_top1"] if history else None,
        "val_top1": val_top1,
        "val_scored": val_counts[1] if val_counts else 0,
        "val_failed": val_counts[2] if val_counts else 0,
        "history": history,
        "first_step_losses": first_losses,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(eval_seconds, 2),
        "total_seconds": round(total_seconds, 2),
        "command": canonical_command(config, recipe, world, device.type if device.index is None or world > 1 else str(device)),
        "argv": list(config.argv) or list(sys.argv),
        "versions": library_versions(),
        "host": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "finished": _now(),
    }


def _write_checkpoint(model: BenchModel, checkpoint: Path, info: dict[str, Any]) -> Path:
    """The weights file and its sidecar (``info`` gets the file's name, SHA-256 and size)."""
    _save_checkpoint(model, checkpoint)
    info["checkpoint"] = {
        "file": checkpoint.name,
        "sha256": sha256_file(checkpoint),
        "bytes": checkpoint.stat().st_size,
    }
    text = json.dumps(info, indent=2) + "\n"
    atomic_write_bytes(sidecar_path(checkpoint), text.encode("utf-8"))
    return checkpoint


def _dataset_sha256(root: Path) -> str | None:
    """The ``sha256`` of a generated data set's ``dataset.json`` (over all its files), else None."""
    try:
        meta = json.loads((root / _SYNTH_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = meta.get("sha256") if isinstance(meta, dict) else None
    return str(value) if isinstance(value, str) else None
