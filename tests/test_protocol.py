"""Protocol files: loading, validation errors that name the key, stable hashes, guess slots."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.protocol import GuessSlot, ProtocolError, list_suites, load_protocol

BASE = """
[protocol]
name = "custom"
version = 1
[guesses]
heuristic = "top5"
threshold = 0.2
"""


def write(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_suites_load() -> None:
    suites = list_suites()
    assert {"ilsvrc_loc", "ilsvrc_loc_tight_loose"} <= set(suites)
    loc = load_protocol("ilsvrc_loc")
    assert loc.thresholds == (0.20,)
    assert loc.heuristic == "top5" and loc.box_rule == "largest_cc" and loc.connectivity == 8
    assert loc.iou_threshold == 0.5 and loc.upsample == "bilinear"
    assert loc.slots == tuple(GuessSlot(r, 0) for r in range(5))
    assert loc.ranks_needed == 5


def test_tight_loose_slots_follow_the_paper_order() -> None:
    tl = load_protocol("ilsvrc_loc_tight_loose")
    assert tl.thresholds == pytest.approx((20 / 255, 100 / 255))
    # (c1, loose), (c1, tight), (c2, loose), (c2, tight), (c3, loose)
    assert [(s.rank, tl.thresholds[s.threshold_index]) for s in tl.slots] == [
        (0, 20 / 255),
        (0, 100 / 255),
        (1, 20 / 255),
        (1, 100 / 255),
        (2, 20 / 255),
    ]
    assert tl.ranks_needed == 3
    assert tl.gt_known_threshold_index == 0


def test_hash_is_stable_across_formatting_and_key_order(tmp_path: Path) -> None:
    a = load_protocol(write(tmp_path, BASE, "a.toml"))
    reordered = """
[guesses]
threshold = 0.20   # same value, other spelling
heuristic = "top5"

[protocol]
version = 1
name = "custom"
[scoring]
iou_threshold = 0.5
"""
    b = load_protocol(write(tmp_path, reordered, "b.toml"))
    assert a.hash == b.hash
    assert len(a.hash) == 64
    c = load_protocol(write(tmp_path, BASE.replace("0.2", "0.25"), "c.toml"))
    assert c.hash != a.hash
    # The shipped suites differ from each other.
    assert load_protocol("ilsvrc_loc").hash != load_protocol("ilsvrc_loc_tight_loose").hash


@pytest.mark.parametrize(
    "text, key",
    [
        (BASE + "[boxes]\nrulez = 'largest_cc'\n", "boxes.rulez"),
        (BASE + "[extra]\nx = 1\n", "extra"),
        (BASE.replace("threshold = 0.2", "threshold = 1.5"), "guesses.threshold"),
        (BASE.replace("threshold = 0.2", "threshold = -0.1"), "guesses.threshold"),
        (BASE.replace("threshold = 0.2", "threshold = 'high'"), "guesses.threshold"),
        (BASE + "[scoring]\niou_threshold = 0\n", "scoring.iou_threshold"),
        (BASE + "[boxes]\nconnectivity = 6\n", "boxes.connectivity"),
        (BASE + "[boxes]\nconnectivity = true\n", "boxes.connectivity"),
        (BASE + "[cam]\nupsample = 'nearest'\n", "cam.upsample"),
        (BASE.replace('version = 1', 'version = 0'), "protocol.version"),
        (BASE.replace('name = "custom"\n', ""), "protocol.name"),
        (BASE + "[data]\nblacklist = '../../etc/passwd'\n", "data.blacklist"),
        (BASE + "[data]\nblacklist = '/etc/passwd'\n", "data.blacklist"),
        (BASE + "[input]\nantialias = 1\n", "input.antialias"),
        (BASE.replace("threshold = 0.2", "threshold = 0.2\ntight_threshold = 0.4"), "guesses.tight_threshold"),
    ],
)
def test_bad_protocols_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProtocolError) as err:
        load_protocol(path)
    assert key in str(err.value)
    assert str(path) in str(err.value)


def test_tight_loose_needs_loose_below_tight(tmp_path: Path) -> None:
    text = BASE.replace('heuristic = "top5"\nthreshold = 0.2', 'heuristic = "tight_loose"\nloose_threshold = 0.5\ntight_threshold = 0.3')
    with pytest.raises(ProtocolError, match="loose_threshold"):
        load_protocol(write(tmp_path, text))


def test_invalid_toml_and_unknown_suite(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not valid TOML"):
        load_protocol(write(tmp_path, "[protocol\nname="))
    with pytest.raises(ProtocolError, match="unknown suite 'nope'.*ilsvrc_loc"):
        load_protocol("nope")


def test_resolved_round_trips_through_validation() -> None:
    from bench.core.protocol import protocol_from_dict

    for suite in ("ilsvrc_loc", "ilsvrc_loc_tight_loose"):
        p = load_protocol(suite)
        again = protocol_from_dict(p.resolved())
        assert again.hash == p.hash
        assert again.slots == p.slots


def test_suite_table_gives_defaults_outside_the_hash(tmp_path: Path) -> None:
    demo = load_protocol("demo")
    assert demo.default_models == ("simplecnn_gap", "simplecnn_gmp")
    assert demo.default_data == "generated"
    assert demo.companions == ("demo_tight_loose",) and demo.tables == (1, 2, 3)
    # Same scoring keys with and without a [suite] table: same hash.
    with_suite = load_protocol(write(tmp_path, BASE + "[suite]\nmodels = ['a']\ndata = 'x'\n", "s.toml"))
    assert with_suite.hash == load_protocol(write(tmp_path, BASE, "n.toml")).hash
    for bad, key in (("models = 'a'", "suite.models"), ("tables = [4]", "suite.tables"), ("companions = [1]", "suite.companions")):
        with pytest.raises(ProtocolError, match=key):
            load_protocol(write(tmp_path, BASE + f"[suite]\n{bad}\n", "bad.toml"))


def test_release_rule_and_method_override(tmp_path: Path) -> None:
    release = load_protocol("ilsvrc_loc_release")
    assert release.box_rule == "cam_release" and release.heuristic == "tight_loose"
    assert release.thresholds == pytest.approx((20 / 255, 100 / 255))  # nominal, recorded
    text = BASE.replace('heuristic = "top5"\nthreshold = 0.2', 'heuristic = "top5"\nthreshold = 0.3') + "[boxes]\nrule = 'cam_release'\n"
    with pytest.raises(ProtocolError, match="guesses.threshold"):
        load_protocol(write(tmp_path, text))
    loc = load_protocol("ilsvrc_loc")
    grad = loc.with_method("gradcam", "features.11")
    assert (grad.cam_method, grad.cam_layer) == ("gradcam", "features.11")
    assert grad.hash != loc.hash and grad.thresholds == loc.thresholds
    assert loc.with_method(None) is loc
    with pytest.raises(ProtocolError, match="cam.method"):
        loc.with_method("saliency")
    assert release.with_method("backprop").box_rule == "cam_release"


def test_cam_release_manifest_protocol_validates_again() -> None:
    """A run's recorded (resolved) cam_release protocol holds the nominal thresholds: it must load
    back with the same hash (bench show / rescore read it); other thresholds stay refused."""
    from bench.core.protocol import ProtocolError, load_protocol, protocol_from_dict

    for name in ("ilsvrc_loc_release", "ilsvrc_loc_release_tencrop", "ilsvrc_loc_release_tencrop_tight_loose"):
        p = load_protocol(name)
        assert protocol_from_dict(p.resolved()).hash == p.hash
    raw = load_protocol("ilsvrc_loc_release").resolved()
    raw["guesses"]["tight_threshold"] = 0.5
    with pytest.raises(ProtocolError, match="cannot be set with boxes.rule = 'cam_release'"):
        protocol_from_dict(raw)
