"""Replaying a finished run: the maps it looked at, for overlays and threshold curves.

Records keep boxes, not maps. :class:`RunReplay` re-opens a finished run from its ``manifest.json``
and serves, per image, the top-5 and the maps of ``[top-1 class, GT class]`` at the image's original
size, from the first source that has them:

1. **the saved maps** of a ``bench score`` run (its maps folder, file by file as ``map_files.csv``
   says): no network; a GT-class ``.npy`` map is shown in both panels;
2. **the run's map cache** (``bench run --save-cams``, ``cams/shard-*.npz``): the exact maps the run
   boxed; no network, no weights needed;
3. **the network**, rebuilt from the manifest (registry names, Caffe files, ``module:factory``
   references with their recorded layer, classifier and preprocessing) and re-run exactly as the
   engine runs it (:mod:`bench.core.maps`: the same input transform, the recorded ``amp`` /
   ``channels_last`` settings and the recorded map method and layer — a ``gradcam`` run replays as
   Grad-CAM), after checking the weights' SHA-256 against the manifest (the weights file's, or the
   state dict's for a model built without one).

Either way the protocol must validate and hash as recorded, and the data must be the run's: the
data set is rebuilt from the manifest (:func:`bench.run.rundata.run_dataset`, ``data_root`` for a
moved copy) and its GT fingerprint must equal the recorded one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from bench.core.maps import forward, grad_context, produce_maps, resize_maps
from bench.core.protocol import Protocol, ProtocolError, protocol_from_dict
from bench.core.records import parse_floats, parse_ints
from bench.core.scoring import localizes
from bench.data.classes import load_class_names, load_wnids, read_synset_names
from bench.data.dataset import CSV_SYNSETS, Dataset, GTImage
from bench.data.transforms import EvalImages, InputTransform
from bench.models import BenchModel
from bench.models.resolve import model_from_manifest
from bench.models.sources import sha256_file
from bench.run.cam_cache import cam_shard_path, read_cam_shard
from bench.run.results import RunDir
from bench.run.rundata import RunDataError, run_dataset
from bench.run.saved_maps import is_score_run, read_map_file, saved_map_files
from bench.runtime import BenchError, RunError, resolve_device

__all__ = ["ReplayError", "ImageMaps", "RunReplay"]


class ReplayError(RunError):
    """A run cannot be replayed (incomplete, no maps and no model, weights or data changed since the run)."""


@dataclass
class ImageMaps:
    """One image's replayed outputs: top-5 and the maps of ``classes`` at original size."""

    index: int  # position in the data set
    gt: GTImage
    height: int
    width: int
    top5_classes: np.ndarray  # (5,) int64
    top5_scores: np.ndarray  # (5,) float64 softmax
    classes: np.ndarray  # (2,) classes whose maps are in ``maps``: [top-1, GT class]
    maps: np.ndarray  # (2, H, W) float32, original pixels
    error: str = ""


class RunReplay:
    """A finished run, re-opened to serve its maps (see the module docstring).

    Attributes:
        run, manifest, protocol, valset, records, class_names, device; ``model`` (None when the
        maps come from files) and ``source`` (``'saved maps'``, ``'map cache'`` or ``'network'``).
    """

    def __init__(
        self,
        run: RunDir,
        manifest: dict[str, Any],
        protocol: Protocol,
        valset: Dataset,
        model: BenchModel | None,
        records: pd.DataFrame,
        class_names: list[str],
        device: torch.device,
    ) -> None:
        self.run = run
        self.manifest = manifest
        self.protocol = protocol
        self.valset = valset
        self.model = model
        self.records = records
        self.class_names = class_names
        self.device = device
        self.source = "network" if model is not None else "saved maps" if is_score_run(manifest) else "map cache"
        self._index = {im.image_id: i for i, im in enumerate(valset.images)}
        self._by_id = records.set_index("image_id", drop=False)
        self._retain: set[str] = set()
        self._cache: dict[str, ImageMaps] = {}

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, run_dir: Path | str, *, device: str = "cpu", data_root: Path | str | None = None) -> RunReplay:
        """Open a finished run for replay; every check of the module docstring is made here.

        Args:
            run_dir: the run folder (holding ``manifest.json`` and ``records.csv.gz``).
            device: ``cpu``, ``cuda`` or ``auto`` (used only when the network is re-run).
            data_root: the data root if it moved since the run (the GT fingerprint must still match).

        Raises:
            ReplayError: the run cannot be replayed; the message says why and what to do.
        """
        run = RunDir(run_dir)
        if not run.exists():
            raise ReplayError(f"{run.path}: not a run folder (no manifest.json)")
        try:
            manifest = run.read_manifest()
            records = run.read_records()
        except (ValueError, FileNotFoundError) as exc:
            raise ReplayError(f"{run.path}: cannot replay an unfinished or damaged run ({exc})") from exc
        model_info = manifest["model"]
        protocol = cls._protocol(run, manifest)
        if not localizes(model_info["head"], protocol.cam_method):
            raise ReplayError(
                f"{run.path}: model {model_info['name']} has a fully connected head and the run used CAM, "
                "which does not apply; nothing to show (a --method gradcam run of it can be shown)"
            )
        # Cheap checks first (the cache, hashing the weights file, reading the GT), the model build last.
        cached = is_score_run(manifest) or (bool(manifest.get("settings", {}).get("save_cams")) and cam_shard_path(run, 0).is_file())
        weights = None if cached else cls._verified_weights(run, model_info)
        try:
            valset = run_dataset(manifest, data_root=data_root, where=str(run.path))
        except RunDataError as exc:
            raise ReplayError(str(exc)) from None
        model = None if cached else cls._model(run, model_info, weights)
        names = cls._class_names(valset)
        dev = torch.device(resolve_device(device))
        if model is not None:
            model.eval().to(dev)
        return cls(run, manifest, protocol, valset, model, records, names, dev)

    @staticmethod
    def _protocol(run: RunDir, manifest: dict[str, Any]) -> Protocol:
        try:
            protocol = protocol_from_dict(manifest["protocol"], where=str(run.manifest_path))
        except ProtocolError as exc:
            raise ReplayError(f"{run.path}: the recorded protocol does not validate ({exc})") from exc
        if protocol.hash != manifest["protocol_hash"]:
            raise ReplayError(
                f"{run.path}: the recorded protocol hashes to {protocol.hash[:12]}, the manifest says "
                f"{manifest['protocol_hash'][:12]}; the manifest was edited"
            )
        if protocol.pipeline != "resize":  # replays redraw one-view CAMs
            raise ReplayError(f"{run.path}: a '{protocol.pipeline}' run (bench tencrop, or a crop suite) cannot be replayed as one-view CAMs of the whole image")
        return protocol

    @staticmethod
    def _verified_weights(run: RunDir, info: dict[str, Any]) -> Path | None:
        """The recorded weights file (given, packaged or downloaded) after checking its SHA-256 against
        the manifest; None when the run loaded no file (a user model's own state): the rebuilt model's
        weights are checked against the recorded digest in :meth:`_model` either way."""
        name, path, expected = info["name"], info.get("weights_path"), info.get("weights_sha256")
        if not expected:
            raise ReplayError(
                f"{run.path}: the run recorded no weights digest for {name} ({info.get('weights_source')}) and has no "
                "map cache; rerun it with --save-cams to show it"
            )
        if not path:  # a user model's own state: its state-dict digest is checked after the build
            return None
        file = Path(path)
        if not file.is_file():
            raise ReplayError(
                f"{run.path}: weights file {file} of {name} is gone; restore it (sha256 {expected}) to replay the run"
            )
        actual = sha256_file(file)
        if actual != expected:
            raise ReplayError(
                f"{run.path}: weights file {file} changed since the run (sha256 {actual[:16]}…, the run used "
                f"{expected[:16]}…); the maps would not be the run's. Restore the original file"
            )
        return file

    @staticmethod
    def _model(run: RunDir, info: dict[str, Any], file: Path | None) -> BenchModel:
        """Rebuild the run's model from its manifest; the weights actually loaded are checked again."""
        name, expected = info["name"], info["weights_sha256"]
        try:
            model, loaded = model_from_manifest(info, weights=file if info.get("weights_source") == "file" else None)
        except BenchError as exc:  # e.g. an nn.Module passed from Python: nothing names it
            raise ReplayError(f"{run.path}: cannot rebuild {name}: {exc}") from exc
        except Exception as exc:  # an import error of a user's module, a changed factory, ...
            raise ReplayError(f"{run.path}: cannot rebuild {name} ({type(exc).__name__}: {exc}); rerun it with --save-cams to show it") from exc
        if loaded.sha256 != expected:
            raise ReplayError(
                f"{run.path}: {name} loaded weights with sha256 {str(loaded.sha256)[:16]}… from {loaded.path or 'its own state'}, "
                f"the run used {expected[:16]}…"
            )
        return model

    @staticmethod
    def _class_names(valset: Dataset) -> list[str]:
        """Short names in class-index order: the data's LOC_synset_mapping.txt, else ImageNet's, else the ids."""
        mapping = valset.root / CSV_SYNSETS
        if mapping.is_file():
            try:
                names = read_synset_names(mapping)
                return [names.get(w, w) for w in valset.class_ids]
            except (OSError, ValueError):
                pass
        if tuple(valset.class_ids) == tuple(load_wnids()):
            return load_class_names()
        return list(valset.class_ids)

    # -- queries ---------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Short run name for headers: ``model / suite``."""
        return f"{self.manifest['model']['name']} / {self.protocol.name}"

    def class_name(self, index: int) -> str:
        """Name of class ``index`` (``class N`` when the model has more classes than the data)."""
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def run_image_ids(self, *, ok_only: bool = True) -> list[str]:
        """Image ids of the run's records (data-set order), only the decoded ones by default."""
        frame = self.records
        if ok_only:
            frame = frame[frame["status"] == "ok"]
        return frame["image_id"].tolist()

    def record(self, image_id: str) -> pd.Series:
        """The run's record of ``image_id`` (ReplayError if the run has none)."""
        if image_id not in self._by_id.index:
            raise ReplayError(f"{self.run.path}: no record for image {image_id!r}")
        return self._by_id.loc[image_id]

    def retain(self, image_ids: Sequence[str]) -> None:
        """Keep the maps of these images in memory once computed, so that a later :meth:`iter_maps`
        (e.g. a gallery after a threshold sweep over all images) does not recompute them."""
        self._retain.update(image_ids)

    def iter_maps(self, image_ids: Sequence[str], *, batch_size: int = 16, workers: int = 0) -> Iterator[ImageMaps]:
        """Top-5 and the maps of [top-1, GT class] for ``image_ids``, in order (batched when re-run).

        Images that failed in the run come back with ``error`` set and empty maps. Maps of images
        passed to :meth:`retain` are computed once and then served from memory.
        """
        missing = [i for i in image_ids if i not in self._index]
        if missing:
            raise ReplayError(f"{self.run.path}: images not in the run's data: {missing[:5]}")
        todo = [i for i in image_ids if i not in self._cache]
        if self.source == "saved maps":
            computed = self._saved_maps(todo)
        elif self.model is None:
            computed = self._cached_maps(todo)
        else:
            computed = self._network_maps(todo, batch_size, workers)
        for image_id in image_ids:
            if image_id in self._cache:
                yield self._cache[image_id]
                continue
            maps = next(computed)
            if image_id in self._retain:
                self._cache[image_id] = maps
            yield maps

    # -- map sources -----------------------------------------------------------------------------
    def _failed(self, index: int, error: str) -> ImageMaps:
        empty = np.zeros(0, np.int64)
        return ImageMaps(index, self.valset.images[index], 0, 0, empty, np.zeros(0), empty, np.zeros((2, 0, 0), np.float32), error)

    def _from_record(self, index: int, rec: pd.Series, classes: np.ndarray, pair: np.ndarray) -> ImageMaps:
        """An image's maps read from files: top-5 from its record, the pair resized to its size."""
        size = (int(rec["height"]), int(rec["width"]))
        return ImageMaps(
            index,
            self.valset.images[index],
            size[0],
            size[1],
            parse_ints(rec["top5_classes"]),
            parse_floats(rec["top5_scores"]),
            classes,
            resize_maps(pair.astype(np.float32), size, self.protocol.upsample),
        )

    def _cached_maps(self, image_ids: Sequence[str]) -> Iterator[ImageMaps]:
        """Maps from the run's cache (shard files read once each, in the order needed)."""
        shard_size = int(self.manifest["settings"]["shard_size"])
        loaded: dict[int, tuple[dict[str, np.ndarray], dict[int, int]]] = {}
        for image_id in image_ids:
            index = self._index[image_id]
            rec = self.record(image_id)
            if rec["status"] != "ok":
                yield self._failed(index, str(rec["error"]))
                continue
            shard = index // shard_size
            if shard not in loaded:
                loaded.clear()  # keep one shard in memory
                cache = read_cam_shard(self.run, shard)
                loaded[shard] = (cache, {int(i): row for row, i in enumerate(cache["index"])})
            cache, position = loaded[shard]
            row = position[index]
            classes = cache["classes"][row].astype(np.int64)
            cams = cache["cams"][row]
            pair = np.stack([cams[0], cams[len(classes) - 1]])  # top-1, then the GT class (last)
            yield self._from_record(index, rec, np.array([classes[0], classes[-1]], np.int64), pair)

    def _saved_maps(self, image_ids: Sequence[str]) -> Iterator[ImageMaps]:
        """Maps of a ``bench score`` run, read from its maps folder (the files it scored)."""
        folder, files = saved_map_files(self.run, self.manifest)
        class_ids = self.manifest["data"].get("class_ids") or list(self.valset.class_ids)
        for image_id in image_ids:
            index = self._index[image_id]
            rec = self.record(image_id)
            if rec["status"] != "ok" or not files.get(image_id):
                yield self._failed(index, str(rec["error"]) or "no map file")
                continue
            rel = files[image_id]
            try:
                classes, maps, _scores = read_map_file((folder / rel).read_bytes(), rel, class_ids)
            except (OSError, ValueError) as exc:
                raise ReplayError(f"{self.run.path}: cannot read map {folder / rel} ({exc})") from None
            label = self.valset.images[index].label
            if classes is None:  # a GT-class map only: shown in both panels
                pair, pair_classes = np.stack([maps[0], maps[0]]), np.array([label, label], np.int64)
            else:
                gt_row = int(np.flatnonzero(classes == label)[0])
                pair, pair_classes = np.stack([maps[0], maps[gt_row]]), np.array([classes[0], label], np.int64)
            yield self._from_record(index, rec, pair_classes, pair)

    def _network_maps(self, image_ids: Sequence[str], batch_size: int, workers: int) -> Iterator[ImageMaps]:
        """The model re-run as the engine runs it, streamed in the order of ``image_ids``."""
        if not image_ids:
            return
        assert self.model is not None
        spec = self.model.spec
        transform = InputTransform(spec.input_size, spec.mean, spec.std, self.protocol.interpolation, self.protocol.antialias)
        indices = [self._index[i] for i in image_ids]
        loader = DataLoader(EvalImages(self.valset.images, indices, transform), batch_size=batch_size, shuffle=False, num_workers=workers)
        settings = self.manifest.get("settings", {})
        amp = settings.get("amp", "off") or "off"
        channels_last = bool(settings.get("channels_last", False))
        method, layer = self.protocol.cam_method, self.protocol.cam_layer or None
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        for batch in loader:
            # The autograd mode is thread state: it is set only while a batch is computed, never
            # while this generator is suspended at a yield (the caller's code would run under it).
            with grad_context(method):
                x = batch["image"].to(self.device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits, features = forward(self.model, x, amp)
                probs = logits.float().softmax(dim=1)
                scores, top = probs.topk(min(5, probs.shape[1]), dim=1)
                labels = torch.as_tensor([self.valset.images[int(i)].label for i in batch["index"]], device=self.device)
                classes = torch.stack([top[:, 0], labels], dim=1)
                maps = produce_maps(self.model, x, classes, method, layer, features)
            for row, index in enumerate(batch["index"].tolist()):
                if batch["error"][row]:
                    yield self._failed(index, batch["error"][row])
                    continue
                size = (int(batch["height"][row]), int(batch["width"][row]))
                yield ImageMaps(
                    index,
                    self.valset.images[index],
                    size[0],
                    size[1],
                    top[row].cpu().numpy().astype(np.int64),
                    scores[row].cpu().double().numpy(),
                    classes[row].cpu().numpy().astype(np.int64),
                    resize_maps(maps[row], size, self.protocol.upsample),
                )
