"""The pointing suites: maps for every class present in each image, scored per (image, class) pair.

``bench run --suite pointing_voc07|pointing_voc07_difficult|pointing_coco14|pointing_coco14_difficult``
(any suite with a ``[pointing]`` table) comes here. One pass over the data in image-id order:

1. the image is decoded and resized as the suite's ``[input]`` says (:mod:`bench.data.transforms`);
2. a :class:`MapSource` gives one map per class present (a network through
   :func:`bench.core.maps.produce_maps` with the suite's ``[cam]`` method, or a model-free producer
   registered in :data:`MAP_SOURCES`); the maps are upsampled to the original image size by
   :func:`bench.core.maps.resize_maps` (the suite's ``cam.upsample``);
3. each pair's region (:meth:`bench.data.multilabel.MultiLabelDataset.region`) is compared with its
   map by the rules of :mod:`bench.core.saliency`.

Every pair is a record (``records.csv.gz``): ``scored``, ``skipped`` (``all-boxes-difficult``,
``not-in-difficult-subset``) or ``failed`` (image not decoded, map not finite), with the reason.
``summary.json`` is derived from the records by the metric objects of :mod:`bench.metrics.pointing`
and :mod:`bench.metrics.saliency`. Records are written in shards of ``shard_size`` images; a killed
run resumes with the same command.

Class mapping: the model's outputs are matched to the data's classes by id (a checkpoint's JSON
sidecar, :func:`bench.run.suite.model_class_ids`); a model whose ids are unknown must have exactly as
many outputs as the data set has classes, taken in the data set's class order (VOC: the 20 names
alphabetically; COCO: category ids ascending) — the order of TorchRay's VOC/COCO models.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol as TypingProtocol

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench.core import saliency as S
from bench.core.maps import forward, grad_context, produce_maps, resize_maps
from bench.core.protocol import Protocol
from bench.data.multilabel import MultiLabelDataset, load_difficult_flags, pair_status
from bench.data.transforms import EvalImages, InputTransform
from bench.metrics.pointing import PointingGame
from bench.metrics.saliency import (
    AttributionLocalisation,
    EnergyPointingGame,
    LocalisationAUC,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    TopKIntersection,
)
from bench.models.base import BenchModel
from bench.models.center import CENTER, CenterMapSource
from bench.run.engine import RunConfig
from bench.run.manifest import model_section, new_manifest, now_utc, resume_or_start
from bench.run.results import RunDir, RunLocked, atomic_write_bytes
from bench.run.request import SuiteRequest
from bench.runtime import RunError

__all__ = [
    "MAP_SOURCES",
    "POINTING_COLUMNS",
    "MapSource",
    "ModelMaps",
    "PointingConfig",
    "open_multilabel",
    "pair_scores",
    "run_pointing",
    "run_pointing_suite",
    "summarize_pointing",
]

#: Per-map score columns, in record order (each a :class:`bench.metrics.saliency.MeanMapScore` key).
SCORE_METRICS = (EnergyPointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy, TopKIntersection, AttributionLocalisation, LocalisationAUC)
POINTING_COLUMNS = (
    "image_id", "class_id", "class_name", "status", "reason", "width", "height", "point_x", "point_y", "hit",
    *(m.key for m in SCORE_METRICS),
)  # fmt: skip


class MapSource(TypingProtocol):
    """What makes the maps: ``maps(x, classes)`` -> ``(B, k, h, w)`` float maps of ``classes (B, k)``
    (output indices of the source), any ``h, w`` (upsampled to each image's size afterwards).
    ``name`` names the run folder; ``input_size``, ``mean``, ``std`` say how images are prepared.
    A source may also define ``points(sizes) -> (B, 2)`` ``(x, y)`` in original pixels: the pointing
    game then uses these points instead of the maps' maxima (TorchRay's centre baseline points at
    ``(W/2, H/2)``)."""

    name: str
    input_size: int
    mean: Sequence[float]
    std: Sequence[float]

    def maps(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor: ...


#: Model-free map producers by ``--model`` name (e.g. a centre baseline): name -> factory.
MAP_SOURCES: dict[str, Callable[[], MapSource]] = {CENTER: CenterMapSource}


@dataclass
class ModelMaps:
    """A network's maps with the suite's method (``cam``, ``gradcam``, ...), through produce_maps."""

    model: BenchModel
    method: str = "cam"
    layer: str | None = None
    amp: str = "off"

    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def input_size(self) -> int:
        return self.model.spec.input_size

    @property
    def mean(self) -> Sequence[float]:
        return self.model.spec.mean

    @property
    def std(self) -> Sequence[float]:
        return self.model.spec.std

    def maps(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits, features = forward(self.model, x, self.amp) if self.method == "cam" else (None, None)
        return produce_maps(self.model, x, classes, self.method, self.layer, features)


@dataclass(frozen=True)
class PointingConfig:
    """Run settings (the `bench run` flags that apply)."""

    device: str = "cpu"
    batch_size: int = 16
    workers: int = 0
    limit: int | None = None
    shard_size: int = 500
    progress: bool = True
    difficult_flags: Path | None = None  # the EBP flag list; None: the one the torchray package ships


def open_multilabel(protocol: Protocol, root: Path) -> MultiLabelDataset:
    """The suite's multi-label data set under ``root`` (``[pointing] dataset`` and ``split``)."""
    p = dict(protocol.pointing)
    if p["dataset"] == "voc07":
        from bench.data.readers import voc_detection

        return voc_detection.read(root, p["split"] or "test")
    from bench.data.readers import coco_instances

    return coco_instances.read(root, p["split"] or "val2014")


def data_fingerprint(dataset: MultiLabelDataset) -> str:
    """sha256 of every image id, size and class present with its boxes, flags and annotation ids."""
    h = hashlib.sha256(json.dumps([dataset.layout, list(dataset.class_ids)]).encode())
    for im in dataset.images:
        h.update(json.dumps([im.image_id, im.size, [[c.class_index, c.boxes.tolist(), c.difficult.tolist(), list(c.ann_ids)] for c in im.classes]]).encode())
    return h.hexdigest()


def class_indices(source_ids: Sequence[str] | None, n_outputs: int | None, dataset: MultiLabelDataset, name: str) -> np.ndarray:
    """Data class index -> the source's output index (see the module docstring); raises RunError."""
    if source_ids is not None:
        pos = {c: i for i, c in enumerate(source_ids)}
        missing = [c for c in dataset.class_ids if c not in pos]
        if missing:
            raise RunError(f"{name} has no output for class(es) {missing[:5]} of the {dataset.layout} data; use a model trained on these classes")
        return np.array([pos[c] for c in dataset.class_ids], dtype=np.int64)
    if n_outputs is not None and n_outputs != len(dataset.class_ids):
        raise RunError(
            f"{name} predicts {n_outputs} classes and says not which: the {dataset.layout} data has {len(dataset.class_ids)} "
            "(give a model with one output per data class, in the data set's class order, or a checkpoint whose JSON sidecar lists its classes)"
        )
    return np.arange(len(dataset.class_ids), dtype=np.int64)


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.10f}"


def pair_scores(maps: np.ndarray, regions: np.ndarray, points: torch.Tensor | None, tolerance: int = 15, top_k: int = 1000,
                device: torch.device | str = "cpu") -> list[dict[str, Any]]:  # fmt: skip
    """Record fields of one image's scored pairs (``point_x, point_y, hit`` and the scores, as text):
    ``maps``/``regions`` ``(k, H, W)`` at the original size, computed in float64 on ``device``.
    ``points``: the pointing game's points, else the maps' maxima."""
    m = torch.from_numpy(np.ascontiguousarray(maps)).to(device=device, dtype=torch.float64)
    r = torch.from_numpy(regions).to(device)
    pts = S.argmax_points(m) if points is None else points.reshape(-1, 2)
    hits = S.pointing_hits(pts, r, tolerance)
    cols: dict[str, torch.Tensor] = {}
    for metric in SCORE_METRICS:
        if metric is TopKIntersection:
            if top_k < m.shape[1] * m.shape[2]:
                cols[metric.key] = S.top_k_intersection(m, r, top_k)
            else:  # Quantus refuses k >= H*W
                cols[metric.key] = torch.full((len(m),), math.nan, dtype=torch.float64)
        else:
            cols[metric.key] = metric().scores(m, r)
    out = []
    for i in range(len(m)):
        px, py = pts[i].cpu().tolist()
        row = {"point_x": _fmt(float(px)) if points is not None else str(int(px)), "point_y": _fmt(float(py)) if points is not None else str(int(py)), "hit": str(int(hits[i]))}
        row.update({k: _fmt(float(v[i])) for k, v in cols.items()})
        out.append(row)
    return out


def _image_records(dataset: MultiLabelDataset, index: int, error: str, maps: torch.Tensor | None, source: MapSource,
                   flags: dict | None, protocol: Protocol, device: torch.device | str = "cpu") -> list[dict[str, Any]]:  # fmt: skip
    image = dataset.images[index]
    h, w = image.size
    base = [{"image_id": image.image_id, "class_id": dataset.class_ids[c.class_index], "class_name": dataset.class_names[c.class_index],
             "width": w, "height": h} for c in image.classes]  # fmt: skip
    status = [pair_status(image, c, flags) for c in image.classes]
    scored = [i for i, s in enumerate(status) if s is None]
    for i, s in enumerate(status):
        base[i].update(status="skipped" if s else "scored", reason=s or "")
    if error:
        for i in scored:
            base[i].update(status="failed", reason=error)
        return base
    if scored:
        upsample = protocol.upsample
        resized = resize_maps(maps[scored], (h, w), upsample)
        regions = np.stack([dataset.region(image, image.classes[i]) for i in scored])
        finite = np.isfinite(resized).reshape(len(scored), -1).all(axis=1)
        ok = [j for j in range(len(scored)) if finite[j]]
        for j in range(len(scored)):
            if not finite[j]:
                base[scored[j]].update(status="failed", reason="map is not finite (NaN or inf values)")
        if ok:
            points = None
            if hasattr(source, "points"):
                points = torch.as_tensor(source.points([(h, w)] * len(ok)), dtype=torch.float64)
            p = dict(protocol.pointing)
            for j, row in zip(ok, pair_scores(resized[ok], regions[ok], points, p["tolerance"], p["top_k"], device)):
                base[scored[j]].update(row)
    return base


def _write_records(path: Path, rows: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(rows, columns=list(POINTING_COLUMNS)).fillna("")
    atomic_write_bytes(path, gzip.compress(frame.to_csv(index=False, lineterminator="\n").encode(), mtime=0))


def read_pointing_records(path: Path) -> pd.DataFrame:
    """A pointing run's records, text columns as text, score columns as float (NaN: undefined/absent)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    for col in [m.key for m in SCORE_METRICS]:
        frame[col] = pd.to_numeric(frame[col].where(frame[col] != "", None)).astype(np.float64)
    return frame


def summarize_pointing(run: RunDir) -> dict[str, Any]:
    """``summary.json`` from the merged records, through the metric objects."""
    manifest = run.read_manifest()
    frame = read_pointing_records(run.records_path)
    class_ids = manifest["data"]["class_ids"]
    proto = manifest["protocol"]["pointing"]
    scored = frame[frame["status"] == "scored"]
    game = PointingGame(tolerance=int(proto["tolerance"]), classes=class_ids)
    game.accumulate(torch.tensor(scored["hit"].astype(int).to_numpy()), list(scored["class_id"]))
    summary: dict[str, Any] = {
        "suite": manifest["protocol"]["protocol"]["name"],
        "model": manifest["model"]["name"],
        "protocol_hash": manifest["protocol_hash"],
        "data_fingerprint": manifest["data"]["fingerprint"],
        "images": int(manifest["data"]["images_run"]),
        "images_without_classes": int(manifest["data"]["images_without_classes"]),
        "pairs": len(frame),
        "pairs_scored": len(scored),
        "pairs_skipped": int((frame["status"] == "skipped").sum()),
        "pairs_failed": int((frame["status"] == "failed").sum()),
        "skipped_reasons": {k: int(v) for k, v in frame.loc[frame["status"] == "skipped", "reason"].value_counts().sort_index().items()},
    }
    summary.update(game.compute())
    for metric in SCORE_METRICS:
        m = metric() if metric is not TopKIntersection else metric(k=int(proto["top_k"]))
        m.accumulate(torch.tensor(scored[metric.key].to_numpy()))
        summary.update(m.compute())
    run.write_summary(summary)
    return summary


def run_pointing(protocol: Protocol, dataset: MultiLabelDataset, source: MapSource, class_index: np.ndarray, run: RunDir,
                 config: PointingConfig, source_info: dict[str, Any], command: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """Run one map source on one pointing suite into ``run``; resumes finished shards; returns the summary."""
    try:
        with run.lock():
            return _run_locked(protocol, dataset, source, class_index, run, config, source_info, command)
    except RunLocked as exc:
        raise RunError(str(exc)) from None


def _run_locked(protocol, dataset, source, class_index, run, config, source_info, command) -> dict[str, Any]:
    p = dict(protocol.pointing)
    flags = load_difficult_flags(dataset.layout, config.difficult_flags, len(dataset.class_ids)) if p["subset"] == "difficult" else None
    flags_sha = hashlib.sha256(json.dumps(sorted((k, v.tolist()) for k, v in flags.items())).encode()).hexdigest() if flags is not None else None
    n = len(dataset.images) if config.limit is None else min(config.limit, len(dataset.images))
    fingerprint = data_fingerprint(dataset)
    identity = {"protocol_hash": protocol.hash, "model": source_info, "data_fingerprint": fingerprint, "images_run": n, "difficult_flags_sha256": flags_sha}
    data = {**dataset.describe(), "class_ids": list(dataset.class_ids), "class_names": list(dataset.class_names),
            "fingerprint": fingerprint, "images_run": n, "difficult_flags": str(config.difficult_flags or "torchray package")}  # fmt: skip
    settings = {"device": config.device, "batch_size": config.batch_size, "workers": config.workers, "limit": config.limit, "shard_size": config.shard_size}
    manifest = resume_or_start(run, identity, lambda: new_manifest(identity=identity, protocol=protocol, model=source_info, data=data, settings=settings, command=command))
    n_shards = (n + config.shard_size - 1) // config.shard_size
    done = run.done_shards()
    todo = [k for k in range(n_shards) if k not in done]
    device = torch.device(config.device)
    if hasattr(source, "model"):
        source.model.eval().to(device)
    transform = InputTransform(source.input_size, source.mean, source.std, protocol.interpolation, protocol.antialias)
    bar = tqdm(total=sum(min(config.shard_size, n - k * config.shard_size) for k in todo), desc=f"{source.name} on {protocol.name}", unit="img", disable=not config.progress)
    with grad_context(protocol.cam_method):
        for k in todo:
            indices = list(range(k * config.shard_size, min((k + 1) * config.shard_size, n)))
            loader = DataLoader(EvalImages(dataset.images, indices, transform), batch_size=config.batch_size, shuffle=False, num_workers=config.workers)
            rows: list[dict[str, Any]] = []
            for batch in loader:
                idx = [int(i) for i in batch["index"]]
                present = [[int(class_index[c.class_index]) for c in dataset.images[i].classes] for i in idx]
                kmax = max((len(c) for c in present), default=0)
                maps = None
                if kmax:
                    classes = torch.tensor([c + [c[0] if c else 0] * (kmax - len(c)) for c in present], device=device)
                    maps = source.maps(batch["image"].to(device), classes).detach().float().cpu()
                for row, i in enumerate(idx):
                    rows += _image_records(dataset, i, batch["error"][row], None if maps is None else maps[row, : len(present[row])], source, flags, protocol, device)
                bar.update(len(idx))
            _write_records(run.shard_path(k), rows)
    bar.close()
    lines: list[str] = [",".join(POINTING_COLUMNS)]
    for k in range(n_shards):
        text = gzip.decompress(run.shard_path(k).read_bytes()).decode().split("\n")
        lines.extend(line for line in text[1:] if line)
    atomic_write_bytes(run.records_path, gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    manifest["finished"] = now_utc()
    run.write_manifest(manifest)
    return summarize_pointing(run)


def run_pointing_suite(request: SuiteRequest, config: RunConfig, difficult_flags: Path | None = None) -> list[RunDir]:
    """`bench run` on a pointing suite: ``request`` what was asked for, ``config`` the run settings
    (device, batch size, workers, limit, shard size, progress, amp). Models and data are checked before any file is written; one run folder per model,
    ``OUT/<suite>/<model>[-<method>]``."""
    from bench.core.protocol import load_protocol
    from bench.models.resolve import is_registry_model, resolve_model
    from bench.run.suite import check_extra, model_class_ids, run_folder

    protocol = load_protocol(request.suite).with_method(request.method, request.layer)
    if not request.models:
        raise RunError(f"suite {protocol.name} names no default models: pass --model NAME")
    if request.data is None:
        raise RunError(f"suite {protocol.name} needs --data: the VOCdevkit folder (VOC07) or the COCO folder with annotations/")
    for ref in request.models:
        if isinstance(ref, str) and ref not in MAP_SOURCES:
            check_extra(ref)
    dataset = open_multilabel(protocol, Path(request.data))
    if dict(protocol.pointing)["subset"] == "difficult":  # refuse a missing flag list before any file is written
        load_difficult_flags(dataset.layout, difficult_flags, len(dataset.class_ids))
    sources = []
    for i, ref in enumerate(request.models):
        if isinstance(ref, str) and ref in MAP_SOURCES:
            source = MAP_SOURCES[ref]()
            ids = getattr(source, "class_ids", None)
            info = {"name": source.name, "paper_name": None, "family": source.name, "head": "maps", "input_size": source.input_size,
                    "grid": None, "weights_source": "none (model-free map producer)", "weights_path": None, "weights_sha256": None}  # fmt: skip
            sources.append((source, class_indices(ids, None, dataset, ref), info))
            continue
        options = replace(request.model_options, weights=request.weights[i] if i < len(request.weights) else None,
                          layer=None if is_registry_model(ref) else request.layer, method=protocol.cam_method)  # fmt: skip
        model, info = resolve_model(ref, options)
        index = class_indices(model_class_ids(model, info), model.num_classes, dataset, model.spec.name)
        layer = (protocol.cam_layer or None) if is_registry_model(ref) else None
        sources.append((ModelMaps(model, protocol.cam_method, layer, getattr(config, "amp", "off")), index, model_section(model, info)))
    pconfig = PointingConfig(device=config.device, batch_size=config.batch_size, workers=config.resolved_workers() if hasattr(config, "resolved_workers") else 0,
                             limit=config.limit, shard_size=config.shard_size, progress=config.progress, difficult_flags=difficult_flags)  # fmt: skip
    runs = []
    for i, (source, index, info) in enumerate(sources):
        run = run_folder(request.out, protocol, source.name)
        summary = run_pointing(protocol, dataset, source, index, run, pconfig, info, command=sys.argv)
        if i < len(request.labels):  # --label: the run's name in `bench table --pointing`
            manifest = run.read_manifest()
            manifest["label"] = request.labels[i]
            run.write_manifest(manifest)
        runs.append(run)
        if request.verbose:
            print(f"{source.name} on {protocol.name}: pointing accuracy {100 * summary['pointing_accuracy']:.1f} % "
                  f"(mean of {summary['pointing_classes']} per-class accuracies; {summary['pairs_scored']} pairs scored, "
                  f"{summary['pairs_skipped']} skipped, {summary['pairs_failed']} failed); results in {run.path}")  # fmt: skip
    return runs
