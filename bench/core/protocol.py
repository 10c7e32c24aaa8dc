"""Protocols: declarative suite files (``protocols/*.toml``) loaded into a validated, frozen object.

A protocol is data, not code. Its resolved form (every key with its value, defaults filled in) is
saved with each run, and its hash (sha256 of the canonical JSON of the resolved form) identifies it:
two runs are comparable only when their protocol hashes agree.

Schema (every table and key; anything else is an error naming the key):

[protocol] name (str, required), version (int >= 1, required), description (str)
[input]    interpolation ("bilinear" | "bicubic"), antialias (bool),
           pipeline ("resize" = the whole image resized to the model's input, one view;
           "tencrop_release" = the CAM release's ten-crop heat maps, bench.models.caffe.tencrop: Caffe
           models only, needs interpolation "bilinear", antialias true and cam.upsample "bicubic", which
           is what that pipeline does with MATLAB's imresize), mean_image (str: with tencrop_release, a
           mean-image file relative to the data root, e.g. "ilsvrc_2012_mean.mat"; "" = the per-channel
           mean); pipeline "crop" = the crop protocol of the BAS/PSOL papers (bench.core.crop): the image
           resized to resize x resize and centre-cropped to crop x crop, maps and GT boxes in crop pixels;
           needs boxes.rule "crop_largest_cc" and cam.upsample "bilinear";
           resize (int, default 256), crop (int, 0 < crop <= resize, default 224), classify ("tencrop" =
           mean softmax of the ten crops of the resize x resize image, "resize" = one view, the whole image
           resized to crop x crop, "crop" = the centre crop itself): these three with pipeline "crop" only
[cam]      upsample ("bilinear" | "bicubic"), method ("cam" | "backprop" | "gradcam" | "gradcampp", or a
           library method "grad-cam:NAME" | "torchcam:NAME", bench.core.library_methods),
           layer (str: module path for gradcam/gradcampp, "" = the default layer)
[boxes]    rule ("largest_cc" | "cam_release" | "crop_largest_cc": the crop protocol's min-max map,
           bilinear to the crop, > threshold, largest 8-connected component, exclusive-end box), connectivity (4 | 8), jpeg_roundtrip (bool: with
           cam_release, the 8-bit map goes through a quality-75 JPEG as in the release)
           cam_release is the authors' released generator: its thresholds (20, 100, 110 of 255) are
           fixed, so the guesses.*threshold keys must be left out or equal the nominal 20/255 and
           100/255 (which are recorded) and connectivity must be 8
[guesses]  heuristic ("top5" | "tight_loose");
           top5: threshold (0 <= t < 1);
           tight_loose: loose_threshold, tight_threshold (0 <= loose < tight < 1)
[scoring]  iou_threshold (0 < x <= 1), strict (bool: a hit needs IoU > iou_threshold instead of >=;
           hashed only when true)
[data]     blacklist (str: a path relative to the data root, "" for none; must not escape the root)
[wsol]     (optional; wsolevaluation's threshold sweeps computed as its code does, bench.core.wsol,
           after the run from the run's CAM cache, written to sweep.json / sweep_curves.csv)
           evaluation ("" = none, "boxes" = MaxBoxAcc and MaxBoxAccV2, "masks" = PxAP),
           step (threshold grid step, 0 < step < 1, default 0.001 = their evaluator's default).
           Part of the hash only when evaluation is set (hashes of other protocols are unchanged)
[pointing] (optional; the saliency suites, bench.run.pointing: multi-label data, every class present
           in an image is a pair) dataset ("" = none, "voc07" = PASCAL VOC 2007 detection layout,
           "coco" = COCO instances JSON), subset ("all" | "difficult": the EBP difficult subset),
           split (str, "" = the data set's default: "test" for voc07, "val2014" for coco),
           tolerance (int >= 0, pixels, default 15), top_k (int >= 1, default 1000: the top-k
           intersection's k). Part of the hash only when dataset is set
[suite]    (optional; what `bench run --suite NAME` does when flags are left out — NOT part of the
           hash, since it does not change how an image is scored)
           models (list of registry names), data ("generated" = the embedded generated data set,
           made on first use, or a path), companions (list of other suites run on the same models and
           data, e.g. the tight/loose variant), tables (list of paper table numbers written after the run),
           box_thresholds (table: model-name part -> box threshold; the first part found in the lowercase
           model name gives the run's guesses.threshold unless --box-threshold is given; crop suites)

The keys input.pipeline, input.mean_image, boxes.jpeg_roundtrip and scoring.strict enter the resolved form (and so
the hash) only when they differ from their defaults, so every protocol written before they existed
keeps its hash. input.resize, input.crop and input.classify enter it only with
pipeline "crop". `bench run` and `bench rescore` run the "resize" and "crop" pipelines
(:meth:`Protocol.require_resize_pipeline`); "tencrop_release" runs with `bench tencrop`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Protocol",
    "ProtocolError",
    "GuessSlot",
    "load_protocol",
    "find_protocol_file",
    "list_suites",
]


class ProtocolError(ValueError):
    """A protocol file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class GuessSlot:
    """One scored guess: the class of rank ``rank`` (0 = top-1) with the box at ``thresholds[threshold_index]``."""

    rank: int
    threshold_index: int


# key -> (type(s), default, validator or None, description). ``...`` as default means required.
_SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "protocol": {"name": (str, ...), "version": (int, ...), "description": (str, "")},
    "input": {
        "interpolation": (str, "bilinear"),
        "antialias": (bool, True),
        "pipeline": (str, "resize"),
        "mean_image": (str, ""),
        "resize": (int, 256),
        "crop": (int, 224),
        "classify": (str, "tencrop"),
    },
    "cam": {"upsample": (str, "bilinear"), "method": (str, "cam"), "layer": (str, "")},
    "boxes": {"rule": (str, "largest_cc"), "connectivity": (int, 8), "jpeg_roundtrip": (bool, False)},
    "guesses": {
        "heuristic": (str, "top5"),
        "threshold": ((int, float), None),
        "loose_threshold": ((int, float), None),
        "tight_threshold": ((int, float), None),
    },
    "scoring": {"iou_threshold": ((int, float), 0.5), "strict": (bool, False)},
    "data": {"blacklist": (str, "")},
    "wsol": {"evaluation": (str, ""), "step": ((int, float), 0.001)},
    "pointing": {"dataset": (str, ""), "subset": (str, "all"), "split": (str, ""), "tolerance": (int, 15), "top_k": (int, 1000)},
    "suite": {"models": (list, []), "data": (str, ""), "companions": (list, []), "tables": (list, []),
              "box_thresholds": (dict, {})},
}

_CHOICES = {
    ("input", "interpolation"): ("bilinear", "bicubic"),
    ("input", "pipeline"): ("resize", "tencrop_release", "crop"),
    ("input", "classify"): ("tencrop", "resize", "crop"),
    ("cam", "upsample"): ("bilinear", "bicubic"),
    ("boxes", "rule"): ("largest_cc", "cam_release", "crop_largest_cc"),
    ("cam", "method"): ("cam", "backprop", "gradcam", "gradcampp"),
    ("boxes", "connectivity"): (4, 8),
    ("guesses", "heuristic"): ("top5", "tight_loose"),
    ("wsol", "evaluation"): ("", "boxes", "masks"),
    ("pointing", "dataset"): ("", "voc07", "coco"),
    ("pointing", "subset"): ("all", "difficult"),
}

_HEURISTIC_KEYS = {"top5": ("threshold",), "tight_loose": ("loose_threshold", "tight_threshold")}


@dataclass(frozen=True)
class Protocol:
    """A validated protocol. All thresholds are fractions of the CAM's maximum."""

    name: str
    version: int
    description: str
    interpolation: str
    antialias: bool
    upsample: str
    cam_method: str
    cam_layer: str
    box_rule: str
    connectivity: int
    heuristic: str
    thresholds: tuple[float, ...]
    iou_threshold: float
    blacklist: str
    source: str = ""  # the file it came from (not part of the hash)
    default_models: tuple[str, ...] = ()  # [suite] defaults (not part of the hash)
    default_data: str = ""
    companions: tuple[str, ...] = ()
    tables: tuple[int, ...] = ()
    pipeline: str = "resize"  # input.pipeline (hashed only when not "resize")
    mean_image: str = ""  # input.mean_image (hashed only when set)
    jpeg_roundtrip: bool = False  # boxes.jpeg_roundtrip (hashed only when true)
    wsol_evaluation: str = ""  # [wsol] evaluation: "" | "boxes" | "masks"
    wsol_step: float = 0.001  # [wsol] step
    pointing: tuple[tuple[str, Any], ...] = ()  # [pointing] keys, () when the table is absent (hashed only when set)
    crop_resize: int = 256  # input.resize (pipeline "crop")
    crop_size: int = 224  # input.crop (pipeline "crop")
    classify: str = "tencrop"  # input.classify (pipeline "crop")
    strict_iou: bool = False  # scoring.strict (hashed only when true)
    box_thresholds: tuple[tuple[str, float], ...] = ()  # [suite] box_thresholds (not part of the hash)

    # --- derived views -------------------------------------------------------------------------
    @property
    def slots(self) -> tuple[GuessSlot, ...]:
        """The 5 scored guesses in order (docs/protocol.md)."""
        if self.heuristic == "top5":
            return tuple(GuessSlot(r, 0) for r in range(5))
        # tight_loose: (c1,loose), (c1,tight), (c2,loose), (c2,tight), (c3,loose)
        return (GuessSlot(0, 0), GuessSlot(0, 1), GuessSlot(1, 0), GuessSlot(1, 1), GuessSlot(2, 0))

    @property
    def ranks_needed(self) -> int:
        """How many top-ranked classes need a CAM (5 for top5, 3 for tight_loose)."""
        return 1 + max(s.rank for s in self.slots)

    @property
    def gt_known_threshold_index(self) -> int:
        """Threshold used for the GT-known box: the first guess's threshold (0.20, or the loose one)."""
        return self.slots[0].threshold_index

    def resolved(self) -> dict[str, Any]:
        """The resolved protocol as nested tables, the form saved in each run's manifest."""
        guesses: dict[str, Any] = {"heuristic": self.heuristic}
        for key, value in zip(_HEURISTIC_KEYS[self.heuristic], self.thresholds):
            guesses[key] = value
        inputs: dict[str, Any] = {"interpolation": self.interpolation, "antialias": self.antialias}
        if self.pipeline != "resize":  # optional keys: absent at their defaults (hashes unchanged)
            inputs["pipeline"] = self.pipeline
        if self.mean_image:
            inputs["mean_image"] = self.mean_image
        if self.pipeline == "crop":
            inputs.update(resize=self.crop_resize, crop=self.crop_size, classify=self.classify)
        boxes: dict[str, Any] = {"rule": self.box_rule, "connectivity": self.connectivity}
        if self.jpeg_roundtrip:
            boxes["jpeg_roundtrip"] = True
        out = {
            "protocol": {"name": self.name, "version": self.version, "description": self.description},
            "input": inputs,
            "cam": {"upsample": self.upsample, "method": self.cam_method, "layer": self.cam_layer},
            "boxes": boxes,
            "guesses": guesses,
            "scoring": {"iou_threshold": self.iou_threshold, **({"strict": True} if self.strict_iou else {})},
            "data": {"blacklist": self.blacklist},
        }
        if self.wsol_evaluation:
            out["wsol"] = {"evaluation": self.wsol_evaluation, "step": self.wsol_step}
        if self.pointing:
            out["pointing"] = dict(self.pointing)
        return out

    @property
    def hash(self) -> str:
        """sha256 (hex) of the canonical JSON of :meth:`resolved`; stable across key order and formatting."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def require_resize_pipeline(self, command: str) -> None:
        """Refuse a pipeline other than "resize" in a command that runs only that one.

        Raises:
            ProtocolError: ``input.pipeline`` is not "resize" (names the suite and what to use).
        """
        if self.pipeline == "tencrop_release":
            raise ProtocolError(
                f"{self.source or self.name}: input.pipeline = '{self.pipeline}' is the CAM release's ten-crop "
                f"pipeline, which `{command}` does not run; use `bench tencrop --suite {self.name} ...`"
            )

    def with_method(self, method: str | None, layer: str | None = None) -> "Protocol":
        """The same protocol with another map method (`bench run --method`); validated like a file key."""
        if method is None and layer is None:
            return self
        raw = self.resolved()
        if method is not None:
            raw["cam"]["method"] = method
        if layer is not None:
            raw["cam"]["layer"] = layer
        if self.box_rule == "cam_release":
            raw["guesses"] = {"heuristic": self.heuristic}
        where = f"{self.source} (with --method {method})"
        return self._carry(_validate(raw, where))


    def with_threshold(self, threshold: float) -> "Protocol":
        """The same ``top5`` protocol with another box threshold (``bench run --select-on``: chosen on
        another split); validated like a file key. The resolved protocol, and so the hash, records it."""
        if self.heuristic != "top5" or self.box_rule == "cam_release":
            raise ProtocolError(f"{self.name}: only a top5 suite with a threshold of its own can take another box threshold")
        raw = self.resolved()
        raw["guesses"]["threshold"] = float(threshold)
        return self._carry(_validate(raw, f"{self.source} (box threshold {threshold})"))

    def _carry(self, other: "Protocol") -> "Protocol":
        """``other`` with this protocol's source and [suite] defaults (not part of the hash)."""
        return replace(other, source=self.source, default_models=self.default_models, default_data=self.default_data,
                       companions=self.companions, tables=self.tables, box_thresholds=self.box_thresholds)  # fmt: skip

    def threshold_for(self, model_name: str) -> tuple[float, str]:
        """The box threshold a run of ``model_name`` takes by default: ``[suite] box_thresholds`` (the first
        name part found in the lowercase model name), else ``guesses.threshold``. Returns ``(tau, why)``."""
        from bench.core.crop import backbone_threshold

        return backbone_threshold(model_name, self.box_thresholds, self.thresholds[0])


def _check_type(where: str, key: str, value: Any, types: Any) -> None:
    # bool is an int subclass: never accept it where a number is meant, nor a number for a bool.
    if isinstance(value, bool) and types is not bool:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ProtocolError(f"{where}: key '{key}' must be {names}, got {value!r}")


def _is_library_method(method: Any) -> bool:
    """``LIB:NAME`` of a method zoo (bench.core.library_methods; syntax only, no import of the library)."""
    from bench.core.library_methods import is_library_method

    return isinstance(method, str) and is_library_method(method)


Values = dict[tuple[str, str], Any]


def _read_values(raw: dict[str, Any], where: str) -> Values:
    """Every schema key's value (defaults filled in), types checked; unknown tables/keys refused."""
    unknown_tables = sorted(set(raw) - set(_SCHEMA))
    if unknown_tables:
        raise ProtocolError(f"{where}: unknown table(s) {unknown_tables}; allowed: {sorted(_SCHEMA)}")
    values: Values = {}
    for table, keys in _SCHEMA.items():
        section = raw.get(table, {})
        if not isinstance(section, dict):
            raise ProtocolError(f"{where}: '{table}' must be a table ([{table}])")
        unknown = sorted(set(section) - set(keys))
        if unknown:
            raise ProtocolError(
                f"{where}: unknown key(s) {', '.join(f'{table}.{k}' for k in unknown)}; "
                f"allowed in [{table}]: {sorted(keys)}"
            )
        for key, (types, default) in keys.items():
            full = f"{table}.{key}"
            if key in section:
                _check_type(where, full, section[key], types)
                values[(table, key)] = section[key]
            elif default is ...:
                raise ProtocolError(f"{where}: required key '{full}' is missing")
            else:
                values[(table, key)] = default
    return values


def _check_choices_and_name(values: Values, where: str) -> None:
    """Keys with a fixed set of values; the version and the name."""
    for (table, key), choices in _CHOICES.items():
        if (table, key) == ("cam", "method") and _is_library_method(values[(table, key)]):
            continue  # grad-cam:NAME / torchcam:NAME; NAME is checked against the library before a run
        if values[(table, key)] not in choices:
            raise ProtocolError(
                f"{where}: key '{table}.{key}' = {values[(table, key)]!r} is out of range; choose one of {list(choices)}"
            )
    if values[("protocol", "version")] < 1:
        raise ProtocolError(f"{where}: key 'protocol.version' must be >= 1")
    if not values[("protocol", "name")].replace("_", "").replace("-", "").isalnum():
        raise ProtocolError(f"{where}: key 'protocol.name' must be letters, digits, '_' or '-'")


def _thresholds(values: Values, where: str) -> list[float]:
    """The heuristic's box thresholds in slot order (the release rule's nominal ones); ranges checked."""
    heuristic = values[("guesses", "heuristic")]
    wanted = _HEURISTIC_KEYS[heuristic]
    for other_heuristic, keys in _HEURISTIC_KEYS.items():
        for key in keys:
            if key not in wanted and values[("guesses", key)] is not None:
                raise ProtocolError(
                    f"{where}: key 'guesses.{key}' belongs to heuristic '{other_heuristic}', not '{heuristic}'"
                )
    if values[("boxes", "rule")] == "cam_release":
        nominal = {"threshold": 20 / 255, "loose_threshold": 20 / 255, "tight_threshold": 100 / 255}
        # the recorded nominal values themselves are accepted (a run manifest's resolved protocol)
        given = [f"guesses.{k}" for k in wanted if values[("guesses", k)] not in (None, nominal[k])]
        if given:
            raise ProtocolError(
                f"{where}: key(s) {given} cannot be set with boxes.rule = 'cam_release' (its thresholds are fixed)"
            )
        if values[("boxes", "connectivity")] != 8:
            raise ProtocolError(f"{where}: key 'boxes.connectivity' must be 8 with boxes.rule = 'cam_release'")
        for k in wanted:
            values[("guesses", k)] = nominal[k]
    thresholds = []
    for key in wanted:
        t = values[("guesses", key)]
        if t is None:
            t = 0.20 if key == "threshold" else None
        if t is None:
            raise ProtocolError(f"{where}: heuristic '{heuristic}' needs key 'guesses.{key}'")
        if not 0.0 <= float(t) < 1.0:
            raise ProtocolError(f"{where}: key 'guesses.{key}' = {t} is out of range [0, 1)")
        thresholds.append(float(t))
    if heuristic == "tight_loose" and not thresholds[0] < thresholds[1]:
        raise ProtocolError(
            f"{where}: 'guesses.loose_threshold' ({thresholds[0]}) must be below 'guesses.tight_threshold' ({thresholds[1]})"
        )
    return thresholds


def _check_ranges_and_paths(values: Values, where: str) -> None:
    """The IoU threshold, the wsol step and the relative paths (blacklist, mean image)."""
    iou = float(values[("scoring", "iou_threshold")])
    if not 0.0 < iou <= 1.0:
        raise ProtocolError(f"{where}: key 'scoring.iou_threshold' = {iou} is out of range (0, 1]")
    step = float(values[("wsol", "step")])
    if not 0.0 < step < 1.0:
        raise ProtocolError(f"{where}: key 'wsol.step' = {step} is out of range (0, 1)")
    for table, key in (("data", "blacklist"), ("input", "mean_image")):
        rel = values[(table, key)]
        if rel:
            p = PurePosixPath(rel.replace("\\", "/"))
            if p.is_absolute() or ".." in p.parts or (len(rel) > 1 and rel[1] == ":"):
                raise ProtocolError(
                    f"{where}: key '{table}.{key}' = {rel!r} must be a relative path inside the data root"
                )


def _check_pipeline(values: Values, where: str) -> None:
    """Keys that belong to one pipeline or box rule only (tencrop_release, crop, cam_release)."""
    pipeline = values[("input", "pipeline")]
    if pipeline == "tencrop_release":
        fixed = {("input", "interpolation"): "bilinear", ("input", "antialias"): True, ("cam", "upsample"): "bicubic", ("cam", "method"): "cam"}
        for (table, key), want in fixed.items():
            if values[(table, key)] != want:
                raise ProtocolError(
                    f"{where}: input.pipeline = 'tencrop_release' resizes as the release did: key '{table}.{key}' "
                    f"must be {want!r}, got {values[(table, key)]!r}"
                )
        if values[("wsol", "evaluation")]:
            raise ProtocolError(f"{where}: input.pipeline = 'tencrop_release' scores ILSVRC boxes; it takes no [wsol] table")
    elif values[("input", "mean_image")]:
        raise ProtocolError(f"{where}: key 'input.mean_image' applies only with input.pipeline = 'tencrop_release'")
    if values[("boxes", "jpeg_roundtrip")] and values[("boxes", "rule")] != "cam_release":
        raise ProtocolError(f"{where}: key 'boxes.jpeg_roundtrip' applies only with boxes.rule = 'cam_release'")
    _check_crop(values, where)


def _check_crop(values: Values, where: str) -> None:
    """The crop pipeline and the crop box rule go together; the crop keys apply to them only."""
    crop = values[("input", "pipeline")] == "crop"
    if crop != (values[("boxes", "rule")] == "crop_largest_cc"):
        raise ProtocolError(f"{where}: input.pipeline = 'crop' and boxes.rule = 'crop_largest_cc' go together (set both or neither)")
    if not crop:
        for key in ("resize", "crop", "classify"):
            if values[("input", key)] != _SCHEMA["input"][key][1]:
                raise ProtocolError(f"{where}: key 'input.{key}' applies only with input.pipeline = 'crop'")
        return
    if not 0 < values[("input", "crop")] <= values[("input", "resize")]:
        raise ProtocolError(f"{where}: keys input.crop ({values[('input', 'crop')]}) and input.resize "
                            f"({values[('input', 'resize')]}) need 0 < crop <= resize")  # fmt: skip
    wanted = {("input", "interpolation"): "bilinear", ("input", "antialias"): True, ("cam", "upsample"): "bilinear",
              ("guesses", "heuristic"): "top5", ("wsol", "evaluation"): ""}  # fmt: skip
    for (table, key), want in wanted.items():
        if values[(table, key)] != want:
            raise ProtocolError(f"{where}: input.pipeline = 'crop' needs key '{table}.{key}' = {want!r}, got {values[(table, key)]!r}")


def _check_suite(values: Values, where: str) -> None:
    """The [suite] lists and the per-backbone threshold table."""
    for key, item_type in (("models", str), ("companions", str), ("tables", int)):
        items = values[("suite", key)]
        if not all(isinstance(i, item_type) and not isinstance(i, bool) for i in items):
            raise ProtocolError(f"{where}: key 'suite.{key}' must be a list of {item_type.__name__}")
    if any(t not in (1, 2, 3) for t in values[("suite", "tables")]):
        raise ProtocolError(f"{where}: key 'suite.tables' may hold only 1, 2 and 3")
    for part, tau in values[("suite", "box_thresholds")].items():
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= float(tau) < 1.0:
            raise ProtocolError(f"{where}: key 'suite.box_thresholds.{part}' = {tau!r} must be a number in [0, 1)")


def _pointing(values: Values, where: str) -> tuple[tuple[str, Any], ...]:
    """The [pointing] table's keys, () when the table is absent."""
    if not values[("pointing", "dataset")]:
        return ()
    if values[("pointing", "tolerance")] < 0 or values[("pointing", "top_k")] < 1:
        raise ProtocolError(f"{where}: keys 'pointing.tolerance' must be >= 0 and 'pointing.top_k' >= 1")
    return tuple((k, values[("pointing", k)]) for k in _SCHEMA["pointing"])


def _validate(raw: dict[str, Any], where: str) -> Protocol:
    """Validate a parsed protocol (every check names the file and the key) into a :class:`Protocol`."""
    values = _read_values(raw, where)
    _check_choices_and_name(values, where)
    thresholds = _thresholds(values, where)
    _check_ranges_and_paths(values, where)
    _check_pipeline(values, where)
    _check_suite(values, where)
    pointing = _pointing(values, where)
    return Protocol(
        name=values[("protocol", "name")],
        version=values[("protocol", "version")],
        description=values[("protocol", "description")],
        interpolation=values[("input", "interpolation")],
        antialias=values[("input", "antialias")],
        upsample=values[("cam", "upsample")],
        cam_method=values[("cam", "method")],
        cam_layer=values[("cam", "layer")],
        box_rule=values[("boxes", "rule")],
        connectivity=values[("boxes", "connectivity")],
        heuristic=values[("guesses", "heuristic")],
        thresholds=tuple(thresholds),
        iou_threshold=float(values[("scoring", "iou_threshold")]),
        blacklist=values[("data", "blacklist")],
        source=where,
        default_models=tuple(values[("suite", "models")]),
        default_data=values[("suite", "data")],
        companions=tuple(values[("suite", "companions")]),
        tables=tuple(values[("suite", "tables")]),
        pipeline=values[("input", "pipeline")],
        mean_image=values[("input", "mean_image")],
        jpeg_roundtrip=values[("boxes", "jpeg_roundtrip")],
        wsol_evaluation=values[("wsol", "evaluation")],
        wsol_step=float(values[("wsol", "step")]),
        crop_resize=values[("input", "resize")],
        crop_size=values[("input", "crop")],
        classify=values[("input", "classify")],
        strict_iou=values[("scoring", "strict")],
        box_thresholds=tuple((str(k), float(v)) for k, v in values[("suite", "box_thresholds")].items()),
        pointing=pointing,
    )


def _suite_dirs() -> list[Path]:
    """Where suites are looked up: ./protocols (a checkout), then the copy shipped in the wheel."""
    dirs = [Path.cwd() / "protocols"]
    try:
        import bench.suites as shipped

        dirs.append(Path(next(iter(shipped.__path__))))
    except ImportError:  # pragma: no cover
        pass
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_suites() -> dict[str, Path]:
    """Suite name -> file, first found wins (./protocols before the shipped copy)."""
    suites: dict[str, Path] = {}
    for d in _suite_dirs():
        for f in sorted(d.glob("*.toml")):
            suites.setdefault(f.stem, f)
    return suites


def find_protocol_file(suite: str | Path) -> Path:
    """A suite name (``ilsvrc_loc``) or a path to a ``.toml`` file -> the file."""
    path = Path(suite)
    if path.suffix == ".toml":
        if not path.is_file():
            raise ProtocolError(f"protocol file {path} does not exist")
        return path
    suites = list_suites()
    if str(suite) not in suites:
        import difflib

        close = difflib.get_close_matches(str(suite), list(suites), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ProtocolError(f"unknown suite '{suite}'; {hint}known suites: {sorted(suites)} (or pass a path to a .toml file)")
    return suites[str(suite)]


def load_protocol(suite: str | Path) -> Protocol:
    """Load and validate a suite by name or path. Raises :class:`ProtocolError` naming file and key."""
    path = find_protocol_file(suite)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{path}: not valid TOML: {exc}") from exc
    return _validate(raw, str(path))


def protocol_from_dict(raw: dict[str, Any], where: str = "<dict>") -> Protocol:
    """Validate an already-parsed protocol (e.g. the ``protocol`` of a run manifest)."""
    return _validate(raw, where)
