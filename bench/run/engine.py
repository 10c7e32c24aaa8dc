"""The run loop: stream batches through the model, turn CAMs into boxes, score, write shards.

One pass over the data (docs/protocol.md). Images are processed in data-set order (sorted image ids) and
grouped into shards of ``shard_size`` images; a shard's records are written atomically as soon as
the shard is complete, so a killed run resumes by skipping finished shards. Under ``torchrun``
(``WORLD_SIZE > 1``) rank r takes the shards k with ``k % world_size == r``; rank 0 merges.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench.core.crop import view_probabilities
from bench.core.maps import forward, grad_context, produce_maps
from bench.core.scoring import failed_record, image_record, localizes
from bench.run.cam_cache import write_cam_shard
from bench.data.dataset import Dataset
from bench.data.device_decode import EncodedImages, collate_encoded, decode_batch, resolve_decode
from bench.data.crop_views import CropViews
from bench.data.transforms import MAX_PIXELS, EvalImages, InputTransform
from bench.run.box_pool import box_pool_kind, make_box_pool, submit_job
from bench.run.parallel import default_workers
from bench.models import BenchModel, WeightsInfo
from bench.core.protocol import Protocol
from bench.run.manifest import data_section, model_section, new_manifest
from bench.run.results import RunDir, to_jsonable
from bench.run.writer import GT_ONLY, RunWriter, mark_gt_class_maps_only, summarize_run
from bench.runtime import RunError, dist_env

__all__ = ["GT_ONLY", "RunConfig", "gt_class_maps_only", "mark_gt_class_maps_only", "run_suite", "summarize_run"]

def gt_class_maps_only(protocol: Protocol, model: BenchModel) -> bool:
    """Whether a run computes only the GT class's map: the model-free centre baseline (no classes),
    and library methods on suites whose numbers need only that map (the wsol_* suites: their sweeps
    take the GT-class map; library methods cost up to thousands of forward passes per map)."""
    from bench.core.library_methods import is_library_method

    return model.spec.head == "center" or (bool(protocol.wsol_evaluation) and is_library_method(protocol.cam_method))


@dataclass(frozen=True)
class RunConfig:
    """Settings of one run; each maps one-to-one onto a `bench run` flag and is recorded in the manifest."""

    device: str = "cpu"
    batch_size: int = 32
    workers: int | None = 2  # DataLoader decode workers; None = auto: every core on CUDA, else 2
    limit: int | None = None
    shard_size: int = 1000
    progress: bool = True
    amp: str = "off"  # "off" | "bf16" | "fp16": autocast for the forward pass (CAMs stay float32)
    channels_last: bool = False
    save_cams: bool = False  # store top-k + GT CAMs at feature resolution (float32, lossless) for `bench rescore`
    # Workers that upsample + extract boxes while the next batch runs (bench.run.box_pool): 0 = inline,
    # None = auto: one process per core when the network runs on a GPU; inline on CPU, where the
    # network already uses every core and extra workers only contend with it (results/benchmarks/).
    box_workers: int | None = None
    decode: str = "auto"  # "auto" | "cpu" | "cuda": JPEG decoding on the GPU (bench.data.device_decode)

    def resolved_box_workers(self) -> int:
        return box_pool_kind(self.device, self.box_workers)[1]

    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return default_workers() if self.device.startswith("cuda") else 2

    def resolved_decode(self) -> str:
        return resolve_decode(self.decode, self.device)


def _init_distributed(device: torch.device) -> torch.device:
    """Under torchrun: join the process group (gloo on CPU, nccl on CUDA); one GPU per local rank."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", dist_env()[2])
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one (call once, after the last run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _identity(protocol: Protocol, model: BenchModel, weights: WeightsInfo, valset: Dataset, n_images: int, config: RunConfig) -> dict[str, Any]:
    """The part of the manifest that must match for a run directory to be resumed."""
    return {
        "protocol_hash": protocol.hash,
        "model": model.spec.name,
        "weights_sha256": weights.sha256,
        "data_fingerprint": valset.fingerprint(),
        "images": n_images,
        "shard_size": config.shard_size,
        # Settings that change numbers: autocast precision, memory format; whether the map cache is kept.
        "amp": config.amp,
        "channels_last": config.channels_last,
        "save_cams": config.save_cams,
        # Library methods: the library's version changes maps (absent for native methods: identities unchanged).
        **({"method_library": _library_info(protocol)["version"]} if _library_info(protocol) else {}),
        # GPU decoding changes the input's last bits (nvJPEG, device resize); recorded only then, so
        # runs made before this setting existed still resume.
        **({"decode": "cuda"} if config.resolved_decode() == "cuda" else {}),
        # A user model: its reference, layer, classifier, reshape and preprocessing (JSON form, as the
        # manifest holds it); registry models have none, so their identity is unchanged.
        **({"model_setup": to_jsonable(model.manifest_info())} if model.manifest_info() else {}),
    }


def _library_info(protocol: Protocol) -> dict[str, Any] | None:
    """The manifest's ``method`` section for a library method (library, version, class, seed); else None."""
    from bench.core.library_methods import is_library_method, method_info

    return method_info(protocol.cam_method) if is_library_method(protocol.cam_method) else None


class _BatchScorer:
    """Splits the work on one batch: device part now (softmax, top-5, CAMs), per-image part later.

    ``prepare`` runs in the main thread right after the forward pass; it returns one closure per
    image that upsamples that image's CAMs, extracts boxes and scores them. The closures run in a
    thread pool while the next batch goes through the network (torch and the box code release the
    GIL), and their results are consumed in order.
    """

    def __init__(self, protocol: Protocol, model: BenchModel, valset: Dataset, save_cams: bool):
        self.protocol = protocol
        self.valset = valset
        self.model = model
        self.method = protocol.cam_method
        self.localizes = localizes(model.spec.head, self.method)
        self.ranks = protocol.ranks_needed
        self.save_cams = save_cams
        self.gt_only = gt_class_maps_only(protocol, model)

    def prepare(
        self, batch: dict[str, Any], x: torch.Tensor, logits: torch.Tensor, features: torch.Tensor | None,
        probs: torch.Tensor | None = None,
    ) -> tuple[list[Callable[[], dict[str, Any]]], dict[str, np.ndarray] | None]:
        indices = [int(i) for i in batch["index"]]
        gts = [self.valset.images[i] for i in indices]
        if self.gt_only:
            return self._prepare_gt_only(batch, x, gts, indices)
        # probs: class probabilities from other views (the crop pipeline's ten crops), else these logits'
        probs = logits.float().softmax(dim=1) if probs is None else probs
        top_scores, top_classes = probs.topk(min(5, probs.shape[1]), dim=1)
        cams = None
        if self.localizes:
            labels = torch.as_tensor([g.label for g in gts], device=logits.device)
            # Maps of the top-k classes and of the GT class (GT-known).
            wanted = torch.cat([top_classes[:, : self.ranks], labels[:, None]], dim=1)
            # CAM: one batched einsum over the features already computed; gradient maps run their
            # own forward/backward (gradients switched on locally). The cache takes these float32
            # maps as they are: saving them changes no result.
            cams = produce_maps(self.model, x, wanted, self.method, self.protocol.cam_layer or None, features)
        cached = None
        if self.save_cams and cams is not None:
            decoded = np.array([not e for e in batch["error"]], dtype=bool)  # failed images get no entry
            cached = {
                "index": np.asarray(indices, dtype=np.int64)[decoded],
                "classes": wanted.cpu().numpy().astype(np.int32)[decoded],
                "cams": cams.cpu().numpy()[decoded],  # float32: lossless, rescoring gives the same records
            }
        top_classes_np = top_classes.cpu().numpy()
        top_scores_np = top_scores.cpu().numpy()
        jobs: list[Callable[[], dict[str, Any]]] = []
        for row, gt in enumerate(gts):
            blacklisted = gt.image_id in self.valset.blacklisted
            error = batch["error"][row]
            if error:
                jobs.append(partial(failed_record, gt, blacklisted, error))
                continue
            size = (int(batch["height"][row]), int(batch["width"][row]))
            image_cams = None if cams is None else cams[row]
            jobs.append(
                partial(image_record, self.protocol, gt, blacklisted, size, top_classes_np[row], top_scores_np[row], image_cams)
            )
        return jobs, cached

    def _prepare_gt_only(
        self, batch: dict[str, Any], x: torch.Tensor, gts: list[Any], indices: list[int]
    ) -> tuple[list[Callable[[], dict[str, Any]]], dict[str, np.ndarray] | None]:
        """GT-class maps only (:func:`gt_class_maps_only`): no guesses, records as `bench score` of .npy maps."""
        wanted = torch.as_tensor([[g.label] for g in gts], device=x.device, dtype=torch.long)
        cams = produce_maps(self.model, x, wanted, self.method, self.protocol.cam_layer or None, None)
        cached = None
        if self.save_cams:
            decoded = np.array([not e for e in batch["error"]], dtype=bool)
            cached = {
                "index": np.asarray(indices, dtype=np.int64)[decoded],
                "classes": wanted.cpu().numpy().astype(np.int32)[decoded],
                "cams": cams.cpu().numpy()[decoded],
            }
        jobs: list[Callable[[], dict[str, Any]]] = []
        for row, gt in enumerate(gts):
            blacklisted = gt.image_id in self.valset.blacklisted
            if batch["error"][row]:
                jobs.append(partial(failed_record, gt, blacklisted, batch["error"][row]))
                continue
            size = (int(batch["height"][row]), int(batch["width"][row]))
            jobs.append(partial(image_record, self.protocol, gt, blacklisted, size, None, None, cams[row], [int(gt.label)]))
        return jobs, cached


class _ShardSink:
    """Collects records (and cached CAMs) by shard; writes a shard the moment it is complete."""

    def __init__(self, writer: RunWriter, save_cams: bool):
        self.writer = writer
        self.shard_size = writer.shard_size
        self.save_cams = save_cams
        self.records: dict[int, list[dict[str, Any]]] = {}
        self.cams: dict[int, list[dict[str, np.ndarray]]] = {}

    def add(self, indices: list[int], records: list[dict[str, Any]], cached: dict[str, np.ndarray] | None) -> None:
        touched = []
        for index, record in zip(indices, records):
            shard = index // self.shard_size
            self.records.setdefault(shard, []).append(record)
            if shard not in touched:
                touched.append(shard)
        if self.save_cams:
            for shard in touched:
                rows = (np.asarray(indices) // self.shard_size) == shard
                part = None if cached is None else {k: v[rows] for k, v in cached.items()}
                self.cams.setdefault(shard, []).append(part)
        for shard in touched:
            if len(self.records[shard]) == len(self.writer.shard_range(shard)):
                parts = [c for c in self.cams.pop(shard) if c is not None] if self.save_cams else None
                side = None if parts is None else partial(write_cam_shard, self.writer.run, shard, parts)
                self.writer.write_shard(shard, self.records.pop(shard), write_side=side)

    def check_empty(self) -> None:
        if self.records:  # pragma: no cover - every shard is complete once the loader is exhausted
            raise RuntimeError(f"internal error: shards {sorted(self.records)} incomplete after the data ran out")


def _settings(config: RunConfig, world: int) -> dict[str, Any]:
    """The manifest's ``settings``: every run setting, resolved (one entry per ``bench run`` flag)."""
    return {
        "device": config.device,
        "batch_size": config.batch_size,
        "workers": config.resolved_workers(),
        "limit": config.limit,
        "shard_size": config.shard_size,
        "world_size": world,
        "amp": config.amp,
        "channels_last": config.channels_last,
        "save_cams": config.save_cams,
        "cam_cache_dtype": "float32" if config.save_cams else None,
        "box_workers": config.resolved_box_workers(),
        "box_pool": box_pool_kind(config.device, config.box_workers)[0],
        "decode": config.resolved_decode(),
        "torch_threads": torch.get_num_threads(),
        "max_pixels": MAX_PIXELS,
        "seed": None,  # evaluation draws no random numbers; recorded to say so explicitly
    }


def _gt_only_settings(protocol: Protocol, model: BenchModel) -> dict[str, Any]:
    """Settings added for runs that differ from the defaults (absent otherwise: manifests unchanged)."""
    out: dict[str, Any] = {}
    if gt_class_maps_only(protocol, model):
        out["gt_class_maps_only"] = True
    info = _library_info(protocol)
    if info is not None:
        out["seed"] = info["seed"]
    return out


def _check_model_fits_data(protocol: Protocol, valset: Dataset, model: BenchModel) -> None:
    """Refuse, before any work, a model whose classes cannot score this data or this protocol."""
    if model.spec.head == "center":  # model-free: no classes to match
        return
    n_classes = model.num_classes
    top_label = max((g.label for g in valset.images), default=-1)
    if top_label >= n_classes:
        raise RunError(
            f"{model.spec.name} predicts {n_classes} classes but the data under {valset.root} has labels up to "
            f"{top_label} ({len(valset.class_ids)} classes): evaluate it on data with its own classes, or use a "
            "model trained on these classes (`bench train`)"
        )
    if n_classes < 5 or n_classes < protocol.ranks_needed:
        raise RunError(
            f"{model.spec.name} has {n_classes} classes; the protocol {protocol.name} scores the top-5 classes, "
            "so it needs a model with at least 5"
        )


def run_suite(
    protocol: Protocol,
    valset: Dataset,
    model: BenchModel,
    weights: WeightsInfo,
    run: RunDir,
    config: RunConfig,
    command: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Run one model on one suite into ``run``; resumes finished shards. Returns the summary (rank 0).

    The folder is written by :class:`bench.run.writer.RunWriter`: rank 0 holds its lock throughout
    (a second run on the same folder is refused with RunConflict naming the holder's pid; a killed
    run's stale lock is taken over); a finished run with the same identity is reported as it is,
    nothing recomputed and nothing written.
    """
    protocol.require_resize_pipeline("bench run")  # the ten-crop release pipeline: bench tencrop
    if protocol.pipeline == "crop" and config.resolved_decode() == "cuda":
        config = replace(config, decode="cpu")  # the crop views are made from PIL's resize, on the CPU
    _check_model_fits_data(protocol, valset, model)
    world = dist_env()[1]
    device = torch.device(config.device)
    if world > 1:
        device = _init_distributed(device)
    n_images = len(valset.images) if config.limit is None else min(config.limit, len(valset.images))
    identity = _identity(protocol, model, weights, valset, n_images, config)

    def make_manifest() -> dict[str, Any]:
        return new_manifest(
            identity=identity,
            protocol=protocol,
            model=model_section(model, weights),
            data=data_section(valset, n_images),
            settings={**_settings(config, world), **_gt_only_settings(protocol, model)},
            command=command,
            **({"method": _library_info(protocol)} if _library_info(protocol) else {}),
        )

    with RunWriter.open(run, identity, make_manifest, n_images=n_images, shard_size=config.shard_size,
                        distributed=True, barrier=dist.barrier if world > 1 else None) as writer:  # fmt: skip
        if writer.complete:
            return writer.summary
        indices = writer.indices()
        if indices:
            _evaluate(protocol, valset, model, config, device, writer, indices)
        return writer.finish()


def _loader(valset: Dataset, indices: list[int], transform: InputTransform, config: RunConfig, device: torch.device) -> DataLoader:
    """The decode workers' loader over ``indices`` (on CUDA with GPU decoding they only read and check files)."""
    on_device_decode = config.resolved_decode() == "cuda"
    return DataLoader(
        EncodedImages(valset.images, indices) if on_device_decode else EvalImages(valset.images, indices, transform),
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=config.resolved_workers(),
        pin_memory=device.type == "cuda" and not on_device_decode,
        persistent_workers=False,
        collate_fn=collate_encoded if on_device_decode else None,
    )


def _evaluate(
    protocol: Protocol, valset: Dataset, model: BenchModel, config: RunConfig, device: torch.device, writer: RunWriter,
    indices: list[int],
) -> None:
    """Stream the images ``indices`` through the model; each shard goes to ``writer`` once complete."""
    transform = InputTransform(
        model.spec.input_size, model.spec.mean, model.spec.std, protocol.interpolation, protocol.antialias
    ) if protocol.pipeline != "crop" else CropViews(protocol.crop_resize, protocol.crop_size, protocol.classify, model.spec.mean, model.spec.std)
    on_device_decode = config.resolved_decode() == "cuda"
    loader = _loader(valset, indices, transform, config, device)
    scorer = _BatchScorer(protocol, model, valset, config.save_cams)
    model.eval().to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    sink = _ShardSink(writer, config.save_cams)
    rank, world = writer.rank, writer.world
    bar = tqdm(
        total=len(indices),
        desc=f"{model.spec.name} on {protocol.name}" + (f" [rank {rank}]" if world > 1 else ""),
        unit="img",
        disable=not config.progress,
        position=rank,
    )
    pool = make_box_pool(*box_pool_kind(config.device, config.box_workers))
    in_flight: deque[tuple[list[int], list[Any], dict[str, np.ndarray] | None]] = deque()

    def drain(keep: int) -> None:
        while len(in_flight) > keep:
            batch_indices, results, cached = in_flight.popleft()
            records = [r.result() if isinstance(r, Future) else r for r in results]
            sink.add(batch_indices, records, cached)
            bar.update(len(batch_indices))

    try:
        with grad_context(protocol.cam_method):
            for batch in loader:
                if on_device_decode:
                    batch = decode_batch(batch, transform, device)
                x = batch["image"].to(device, non_blocking=True)
                views = None
                if x.ndim == 5:  # crop pipeline (bench.data.crop_views): view 0 is localized, the rest classify
                    x, views = x[:, 0], x[:, 1:]
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, features = forward(model, x, config.amp)
                probs = None if views is None else view_probabilities(model, views, config.amp)
                jobs, cached = scorer.prepare(batch, x, logits, features, probs)
                results = [submit_job(pool, job) for job in jobs]
                in_flight.append(([int(i) for i in batch["index"]], results, cached))
                drain(keep=1)  # at most one batch in the pool while the next one runs
            drain(keep=0)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    sink.check_empty()
