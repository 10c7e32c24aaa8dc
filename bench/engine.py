"""The run loop: stream batches through the model, turn CAMs into boxes, score, write shards.

One pass over the data (DESIGN §1). Images are processed in data-set order (sorted image ids) and
grouped into shards of ``shard_size`` images; a shard's records are written atomically as soon as
the shard is complete, so a killed run resumes by skipping finished shards. Under ``torchrun``
(``WORLD_SIZE > 1``) rank r takes the shards k with ``k % world_size == r``; rank 0 merges.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

import bench
from bench.boxes import boxes_for_maps
from bench.cam import class_activation_maps, upsample_cam
from bench.data.ilsvrc import ValSet
from bench.data.transforms import EvalImages, InputTransform
from bench.metrics import evaluate_image, summarize
from bench.models import BenchModel, WeightsInfo
from bench.protocol import Protocol
from bench.results import (
    IOU_DIGITS,
    RunDir,
    format_boxes,
    format_floats,
    format_ints,
    records_to_arrays,
)

__all__ = ["RunConfig", "RunError", "RunConflict", "run_suite", "summarize_run", "resolve_device"]


class RunError(RuntimeError):
    """A run cannot start as asked (e.g. a device that is not there)."""


class RunConflict(RunError):
    """The output folder holds a different run (other protocol, model, weights, data or size)."""


@dataclass(frozen=True)
class RunConfig:
    """Settings of one run; each maps one-to-one onto a `bench run` flag and is recorded in the manifest."""

    device: str = "cpu"
    batch_size: int = 32
    workers: int = 2
    limit: int | None = None
    shard_size: int = 1000
    progress: bool = True


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return name


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import scipy
    import torchvision

    return {
        "bench": bench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
    }


def _identity(protocol: Protocol, model: BenchModel, weights: WeightsInfo, valset: ValSet, n_images: int, config: RunConfig) -> dict[str, Any]:
    """The part of the manifest that must match for a run directory to be resumed."""
    return {
        "protocol_hash": protocol.hash,
        "model": model.spec.name,
        "weights_sha256": weights.sha256,
        "data_fingerprint": valset.fingerprint(),
        "images": n_images,
        "shard_size": config.shard_size,
    }


def _failed_record(index_record: Any, blacklisted: bool, error: str) -> dict[str, Any]:
    return {
        "image_id": index_record.image_id,
        "label": index_record.label,
        "status": "failed",
        "error": error,
        "blacklisted": int(blacklisted),
        "width": 0,
        "height": 0,
        "top5_classes": "",
        "top5_scores": "",
        "guess_classes": "",
        "guess_boxes": "",
        "guess_ious": "",
        "guess_hits": "",
        "gtk_box": "",
        "gtk_iou": "",
        "gtk_hit": 0,
        "degenerate": 0,
    }


class _BatchScorer:
    """Turns one batch of model outputs into per-image records (CAMs -> boxes -> guesses -> scores)."""

    def __init__(self, protocol: Protocol, model: BenchModel, valset: ValSet):
        self.protocol = protocol
        self.model = model
        self.valset = valset
        self.localizes = model.spec.head in ("gap", "gmp")
        if self.localizes:
            weight, _bias = model.classifier()
            self.weight = weight.detach()
        self.slots = protocol.slots
        self.ranks = protocol.ranks_needed

    def __call__(self, batch: dict[str, Any], logits: torch.Tensor, features: torch.Tensor | None) -> list[dict[str, Any]]:
        probs = logits.float().softmax(dim=1)
        top_scores, top_classes = probs.topk(5, dim=1)
        labels = torch.as_tensor([self.valset.images[int(i)].label for i in batch["index"]], device=logits.device)
        cams = None
        if self.localizes and features is not None:
            # Maps of the top-k classes and of the GT class (GT-known), one batched einsum.
            wanted = torch.cat([top_classes[:, : self.ranks], labels[:, None]], dim=1)
            cams = class_activation_maps(features, self.weight, wanted)  # (B, k+1, h, w)
        top_classes_np = top_classes.cpu().numpy()
        top_scores_np = top_scores.cpu().numpy()
        records = []
        for row in range(len(batch["index"])):
            gt = self.valset.images[int(batch["index"][row])]
            blacklisted = gt.image_id in self.valset.blacklisted
            error = batch["error"][row]
            if error:
                records.append(_failed_record(gt, blacklisted, error))
                continue
            height, width = int(batch["height"][row]), int(batch["width"][row])
            classes = top_classes_np[row]
            guess_classes = np.array([classes[s.rank] for s in self.slots], dtype=np.int64)
            record = {
                "image_id": gt.image_id,
                "label": gt.label,
                "status": "ok",
                "error": "",
                "blacklisted": int(blacklisted),
                "width": width,
                "height": height,
                "top5_classes": format_ints(classes),
                "top5_scores": format_floats(top_scores_np[row]),
                "guess_classes": format_ints(guess_classes),
                "guess_boxes": "",
                "guess_ious": "",
                "guess_hits": "",
                "gtk_box": "",
                "gtk_iou": "",
                "gtk_hit": 0,
                "degenerate": 0,
            }
            if cams is not None:
                record.update(self._localize(cams[row], (height, width), gt, guess_classes))
            records.append(record)
        return records

    def _localize(self, cams: torch.Tensor, size: tuple[int, int], gt: Any, guess_classes: np.ndarray) -> dict[str, Any]:
        """cams: (k+1, h, w) for the top-k ranks then the GT class."""
        up = upsample_cam(cams, size, mode=self.protocol.upsample).float().cpu().numpy()
        boxes, degenerate = boxes_for_maps(
            up, self.protocol.thresholds, rule=self.protocol.box_rule, connectivity=self.protocol.connectivity
        )  # boxes (k+1, T, 4)
        guess_boxes = np.stack([boxes[s.rank, s.threshold_index] for s in self.slots])
        gtk_box = boxes[-1, self.protocol.gt_known_threshold_index]
        scored = evaluate_image(
            gt.label, gt.boxes, guess_classes, guess_boxes, gtk_box, iou_threshold=self.protocol.iou_threshold
        )
        return {
            "guess_boxes": format_boxes(guess_boxes),
            "guess_ious": format_floats(scored.guess_ious, IOU_DIGITS),
            "guess_hits": format_ints(scored.guess_hits.astype(int)),
            "gtk_box": format_ints(gtk_box),
            "gtk_iou": f"{scored.gtk_iou:.{IOU_DIGITS}f}",
            "gtk_hit": int(scored.gtk_hit),
            "degenerate": int(bool(degenerate.any())),
        }


def summarize_run(run: RunDir) -> dict[str, Any]:
    """Recompute ``summary.json`` from the merged per-image records (records first, summary derived)."""
    manifest = run.read_manifest()
    frame = run.read_records()
    arrays = records_to_arrays(frame)
    localized = manifest["model"]["head"] in ("gap", "gmp")
    summary: dict[str, Any] = {
        "suite": manifest["protocol"]["protocol"]["name"],
        "model": manifest["model"]["name"],
        "protocol_hash": manifest["protocol_hash"],
        "data_fingerprint": manifest["data"]["fingerprint"],
    }
    summary.update(summarize(**arrays, localized=localized))
    if not localized:
        summary["note"] = "fully connected head: CAM does not apply; localization needs gradient-based maps"
    run.write_summary(summary)
    return summary


def run_suite(
    protocol: Protocol,
    valset: ValSet,
    model: BenchModel,
    weights: WeightsInfo,
    run: RunDir,
    config: RunConfig,
    command: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Run one model on one suite into ``run``; resumes finished shards. Returns the summary (rank 0)."""
    rank, world = _dist_info()
    device = torch.device(config.device)
    n_images = len(valset.images) if config.limit is None else min(config.limit, len(valset.images))
    n_shards = (n_images + config.shard_size - 1) // config.shard_size
    identity = _identity(protocol, model, weights, valset, n_images, config)

    if run.exists():
        previous = run.read_manifest()
        mismatched = [k for k, v in identity.items() if previous.get("identity", {}).get(k) != v]
        if mismatched:
            raise RunConflict(
                f"{run.path} already holds a different run ({', '.join(mismatched)} differ); "
                "choose another --out or delete that folder"
            )
        manifest = previous
    else:
        manifest = {
            "identity": identity,
            "protocol_hash": protocol.hash,
            "protocol": protocol.resolved(),
            "protocol_file": protocol.source,
            "model": {
                "name": model.spec.name,
                "paper_name": model.spec.paper_name,
                "family": model.spec.family,
                "head": model.spec.head,
                "input_size": model.spec.input_size,
                "grid": model.spec.grid,
                "weights_source": weights.source,
                "weights_path": weights.path,
                "weights_sha256": weights.sha256,
            },
            "data": {
                "root": str(valset.root),
                "layout": valset.layout,
                "fingerprint": valset.fingerprint(),
                "images_total": len(valset.images),
                "images_run": n_images,
                "blacklisted": len(valset.blacklisted),
            },
            "settings": {
                "device": config.device,
                "batch_size": config.batch_size,
                "workers": config.workers,
                "limit": config.limit,
                "shard_size": config.shard_size,
                "world_size": world,
            },
            "versions": _library_versions(),
            "host": {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
            "command": list(command) or sys.argv,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        if rank == 0:
            run.write_manifest(manifest)
    if world > 1:
        dist.barrier()

    done = run.done_shards()
    todo_shards = [k for k in range(n_shards) if k % world == rank and k not in done]
    indices = [i for k in todo_shards for i in range(k * config.shard_size, min((k + 1) * config.shard_size, n_images))]

    if indices:
        transform = InputTransform(
            model.spec.input_size, model.spec.mean, model.spec.std, protocol.interpolation, protocol.antialias
        )
        loader = DataLoader(
            EvalImages(valset.images, indices, transform),
            batch_size=config.batch_size,
            shuffle=False,
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        scorer = _BatchScorer(protocol, model, valset)
        model.eval().to(device)
        pending: dict[int, list[dict[str, Any]]] = {}
        bar = tqdm(
            total=len(indices),
            desc=f"{model.spec.name} on {protocol.name}" + (f" [rank {rank}]" if world > 1 else ""),
            unit="img",
            disable=not config.progress,
            position=rank,
        )
        with torch.inference_mode():
            for batch in loader:
                logits, features = model(batch["image"].to(device, non_blocking=True))
                for record, index in zip(scorer(batch, logits, features), batch["index"].tolist()):
                    shard = index // config.shard_size
                    pending.setdefault(shard, []).append(record)
                    shard_len = min((shard + 1) * config.shard_size, n_images) - shard * config.shard_size
                    if len(pending[shard]) == shard_len:
                        run.write_shard(shard, pending.pop(shard))
                bar.update(len(batch["index"]))
        bar.close()
        if pending:  # pragma: no cover - every shard is complete once the loader is exhausted
            raise RuntimeError(f"internal error: shards {sorted(pending)} incomplete after the data ran out")

    if world > 1:
        dist.barrier()
    if rank != 0:
        return None
    run.merge_shards(n_shards)
    manifest["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run.write_manifest(manifest)
    return summarize_run(run)
