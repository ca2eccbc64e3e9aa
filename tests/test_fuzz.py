"""Fuzzing the doors where untrusted values come in: `Scenario.parse`, the app's URL restore
(`studio.codec.from_query`), and the upload checks.

Thousands of random and hostile inputs (huge numbers, NaN and infinities, negatives, wrong types,
unknown keys, very long strings, unicode, deep nesting). Two properties each:

- nothing but InputError escapes;
- whatever is accepted is in range: every numeric field within its declared bounds, every float
  finite, the canonical form JSON-clean (no NaN) and a fixed point of parse, and (for links)
  the link written back from it restores exactly the same scenario.

Each test stays within a few seconds (`max_examples` below, no deadline: the CPU is shared).
"""
from __future__ import annotations

import json
import math
import struct

import annotated_types as at
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from safetensors.torch import save as st_save

from rmtllmf_core.serve import uploads
from rmtllmf_core.experiment.codec import set_path
from rmtllmf_core.errors import InputError
from rmtllmf_core.serve.hosting import HostLimits
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.experiment.scenario import Scenario

TASKS = ("digits", "house_numbers", "traffic_signs", "textures", "land_cover", "aerial_scenes", "vehicles", "scenes")
BASE = preset_scenario("paper_worst_sum_rate", tasks=TASKS[:4])
DEFAULT = preset_scenario("paper_ideal", tasks=TASKS)
FUZZ = settings(max_examples=600, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
FUZZ_SMALL = settings(FUZZ, max_examples=300)
FUZZ_URL = settings(FUZZ, max_examples=400)


# ---- hostile values ---------------------------------------------------------------------------------

def flatten(data, prefix=""):
    out = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


PATHS = sorted(set(flatten(BASE.to_dict())) | set(flatten(DEFAULT.to_dict()))
               | {"wireless.tx_power_dbm", "wireless.jammer_power_dbm", "wireless.noise_power_dbm", "fusion.lambda",
                  "wireless.channel.re", "wireless.channel.im", "wireless.distances_m", "wireless.angles_deg",
                  "wireless.target_user", "fuse", "wireless", "defense", "evaluation"})
HOSTILE_KEYS = ["", ".", "a..b", "x" * 300, "__proto__", "__class__", "tasks.0", "seed.value", "wireless.",
                "défense.freeze", "wireless.attack\x00", "\u202eevil", "fusion.lambda_", "model_config", "zoo.name"]

big_ints = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([2**31, 2**32, 2**63, -2**63, 10**400]))
nasty_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from([0.0, -0.0, 1e-320, 5e-324, 1e308, -1e308, 1.7976931348623157e308]))
long_text = st.builds(lambda c, n: c * n, st.sampled_from(["a", "ß", "\U0001F4E1", "\x00", "9"]),
                      st.one_of(st.integers(0, 300), st.just(100_000)))
nasty_text = st.one_of(
    st.text(max_size=40), long_text,
    st.sampled_from(["NaN", "nan", "Infinity", "-inf", "1e309", "-1", "0x10", "1_000", "", " ", "true", "null",
                     "none", "white", "digits", "targeted", "worst_max_user_numeric", "per_vector", "ties",
                     "𝔡𝔦𝔤𝔦𝔱𝔰", "ＤＩＧＩＴＳ", "digits ", "dig its", "<script>alert(1)</script>", "'; DROP TABLE x;--",
                     "../../etc/passwd", "\u202e", "patch_embedding"]))
scalars = st.one_of(st.none(), st.booleans(), big_ints, nasty_floats, nasty_text)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(st.one_of(st.sampled_from(PATHS + HOSTILE_KEYS), st.text(max_size=12)),
                                            inner, max_size=6)),
    max_leaves=25)
# lists that look like what the list fields take, but wrong
list_like = st.one_of(
    st.lists(nasty_floats, max_size=70), st.lists(st.sampled_from(TASKS + ("digits", "nope", "")), max_size=70),
    st.lists(st.lists(nasty_floats, max_size=5), max_size=5), st.just([[1.0] * 65] * 2), st.just([[0.5] * 4] * 257))
values = st.one_of(json_like, list_like)


# ---- what "in range" means --------------------------------------------------------------------------

def assert_in_range(model: BaseModel, where: str = "") -> None:
    """Every field of an accepted config satisfies its declared bounds; floats are finite."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{where}{name}"
        _check_value(value, path)
        if value is None:  # an Optional field left unset
            continue
        for c in info.metadata:
            if isinstance(c, at.Ge):
                assert value >= c.ge, path
            elif isinstance(c, at.Gt):
                assert value > c.gt, path
            elif isinstance(c, at.Le):
                assert value <= c.le, path
            elif isinstance(c, at.Lt):
                assert value < c.lt, path
            elif isinstance(c, at.MinLen):
                assert len(value) >= c.min_length, path
            elif isinstance(c, at.MaxLen):
                assert len(value) <= c.max_length, path


def _check_value(value, path):
    if isinstance(value, BaseModel):
        assert_in_range(value, path + ".")
    elif isinstance(value, float):
        assert math.isfinite(value), path
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_value(v, f"{path}[{i}]")
    elif isinstance(value, str):
        assert len(value) <= 200, path


def assert_valid_scenario(s: Scenario) -> None:
    assert isinstance(s, Scenario)
    assert_in_range(s)
    assert 1 <= len(s.tasks) <= 64 and len(set(s.tasks)) == len(s.tasks)
    assert all(1 <= len(t) <= 64 and t.replace("_", "").replace("-", "").isalnum() for t in s.tasks)
    assert s.fuse is None or (set(s.fuse) < set(s.tasks) and s.fuse)
    w = s.wireless
    assert w.num_users == len(s.tasks)
    powers = w.tx_power_w if isinstance(w.tx_power_w, list) else [w.tx_power_w]
    assert all(p >= 0 for p in powers) and w.jammer_power_w >= 0 and w.d_min_m <= w.d_max_m
    assert w.target_user is None or 0 <= w.target_user < w.num_users
    assert w.attack != "targeted" or w.target_user is not None
    canonical = json.dumps(s.to_dict(), allow_nan=False)       # no NaN / Infinity anywhere
    assert Scenario.parse(json.loads(canonical)) == s          # the canonical form is a fixed point


def parse_or_input_error(data):
    try:
        s = Scenario.parse(data)
    except InputError as exc:
        assert exc.field and isinstance(exc.reason, str) and exc.reason
        assert len(str(exc)) < 2000  # a message, not a dump of the input
        return None
    assert_valid_scenario(s)
    return s


# ---- Scenario.parse --------------------------------------------------------------------------------

@FUZZ
@given(values)
def test_parse_random_values(data):
    parse_or_input_error(data)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS + HOSTILE_KEYS), values), min_size=1, max_size=3),
       st.sampled_from([BASE, DEFAULT]))
def test_parse_a_valid_scenario_with_hostile_fields(changes, base):
    data = base.to_dict()
    for path, value in changes:
        if path:
            set_path(data, path, value)
    parse_or_input_error(data)


NUMERIC = [p for p, v in flatten(BASE.to_dict()).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


@FUZZ
@given(st.sampled_from(NUMERIC + ["wireless.tx_power_dbm", "wireless.jammer_power_dbm", "wireless.target_user"]),
       st.one_of(big_ints, nasty_floats, st.integers(-3, 600), st.floats(-2.0, 2.0), st.booleans(),
                 st.sampled_from(["1", "0.5", "1e3", "-0", "１"])))
def test_parse_numeric_boundaries(path, value):
    data = BASE.to_dict()
    if path.endswith("_dbm"):
        data["wireless"].pop(path.split(".")[1].replace("_dbm", "_w"), None)
    set_path(data, path, value)
    s = parse_or_input_error(data)
    if s is not None and isinstance(value, float) and not math.isfinite(value):
        pytest.fail(f"{path}={value} accepted")


# Found by these fuzzers (OverflowError escaped Scenario.parse); fixed in wireless/config.py (568161f).
@pytest.mark.parametrize("path, value", [("wireless.tx_power_dbm", 3113), ("wireless.jammer_power_dbm", 3113),
                                         ("wireless.noise_power_dbm", 3113), ("wireless.tx_power_dbm", 10**400),
                                         ("wireless.tx_power_w", 10**400), ("wireless.tx_power_w", [1e-4, 10**400])],
                         ids=["tx_dbm", "jammer_dbm", "noise_dbm", "tx_dbm_huge_int", "tx_w_huge_int", "tx_w_list"])
def test_huge_power_values_are_refused_naming_their_field(path, value):
    data = BASE.to_dict()
    data["wireless"].pop(path.split(".")[1].replace("_dbm", "_w"), None)
    set_path(data, path, value)
    with pytest.raises(InputError) as err:
        Scenario.parse(data)
    assert err.value.field == path


def test_known_bad_values_are_refused_naming_their_field():
    cases = {"fusion.lambda": 3.5, "defense.realign_steps": 0, "evaluation.samples_per_task": 10**9,
             "seed": -1, "wireless.jammer_power_w": float("nan"), "defense.realign_lr": float("inf"),
             "wireless.attack": "nuclear", "zoo": "z" * 201, "tasks": [], "wireless.num_users": 65}
    for path, value in cases.items():
        data = BASE.to_dict()
        set_path(data, path, value)
        with pytest.raises(InputError) as err:
            Scenario.parse(data)
        assert err.value.field.split(".")[0] == path.split(".")[0], (path, err.value.field)


# ---- the app's URL restore --------------------------------------------------------------------------

codec = pytest.importorskip("studio.codec", reason="the app's URL codec is not there yet")


def encoded(value):
    try:
        return codec.encode_value(value)
    except (ValueError, TypeError):   # NaN / Infinity have no JSON: send them as text
        return str(value)


url_values = st.one_of(values.map(encoded), nasty_text, st.lists(nasty_text, max_size=3))
url_keys = st.one_of(st.sampled_from(PATHS + HOSTILE_KEYS + ["presenter"]), st.text(max_size=30))


def restore_or_input_error(params):
    try:
        s = codec.from_query(params, DEFAULT)
    except InputError as exc:
        assert isinstance(exc.field, str) and len(str(exc)) < 2000
        return None
    assert_valid_scenario(s)
    again = codec.from_query(codec.to_query(s, DEFAULT), DEFAULT)   # the link written back restores it
    assert again == s
    return s


@FUZZ_URL
@given(st.dictionaries(url_keys, url_values, max_size=6))
def test_url_restore_random_params(params):
    restore_or_input_error(params)


@FUZZ_URL
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=4))
def test_url_restore_real_fields_hostile_values(changes):
    restore_or_input_error({path: encoded(value) for path, value in changes})


def test_url_restore_refuses_too_many_or_too_long_params():
    with pytest.raises(InputError):
        codec.from_query({f"k{i}": "1" for i in range(10_000)}, DEFAULT)
    with pytest.raises(InputError):
        codec.from_query({"zoo": "x" * 1_000_000}, DEFAULT)
    with pytest.raises(InputError):
        codec.from_query({"fusion.lambda": "NaN"}, DEFAULT)


# ---- uploads ----------------------------------------------------------------------------------------

LIM = HostLimits.parse({"max_upload_bytes": 64 * 1024, "max_vector_upload_bytes": 1 << 20})
SMALL_STATE = {"conv1.weight": torch.zeros(4, 3, 2, 2), "ln.bias": torch.zeros(4), "proj": torch.zeros(4, 2)}
GOOD_FILE = st_save({k: torch.full_like(v, 0.01) for k, v in SMALL_STATE.items()})


@FUZZ_SMALL
@given(st.one_of(st.binary(max_size=2000), values.map(lambda v: json.dumps(v, default=str).encode()),
                 st.builds(lambda h, b: struct.pack("<Q", len(h)) + h + b,
                           values.map(lambda v: json.dumps(v, default=str).encode()), st.binary(max_size=100))))
@example(b'{"zoo": []}')  # a zoo that is no name once reached a dict lookup unchecked
def test_scenario_upload_random_bytes(data):
    try:
        s = uploads.load_scenario_json(data, lim=LIM)
    except InputError:
        return
    assert_valid_scenario(s)


@FUZZ_SMALL
@given(st.one_of(
    st.binary(max_size=3000),
    # a real file with a few bytes overwritten (header or data)
    st.lists(st.tuples(st.integers(0, len(GOOD_FILE) - 1), st.integers(0, 255)), min_size=1, max_size=6).map(
        lambda flips: bytes(_flip(GOOD_FILE, flips))),
    # a header of our choosing over real data
    st.builds(lambda h: struct.pack("<Q", len(h)) + h + GOOD_FILE[8 + struct.unpack("<Q", GOOD_FILE[:8])[0]:],
              values.map(lambda v: json.dumps(v, default=str).encode())),
))
def test_task_vector_upload_random_bytes(data):
    try:
        out = uploads.load_task_vector(data, SMALL_STATE, lim=LIM)
    except InputError:
        return
    assert list(out) == list(SMALL_STATE)
    for k, t in out.items():
        assert t.shape == SMALL_STATE[k].shape and t.dtype == torch.float32 and bool(torch.isfinite(t).all())


def _flip(data: bytes, flips) -> bytearray:
    out = bytearray(data)
    for i, b in flips:
        out[i] = b
    return out


# ---- accepted values must also be computable ------------------------------------------------------

# Found while fuzzing: accepted absurd powers crashed the uplink (LinAlgError); now refused (568161f).
@pytest.mark.parametrize("changes", [
    {"wireless.jammer_power_w": 1e308},
    {"wireless.tx_power_w": 1e308},
    {"wireless.noise_power_w": 1e-300},
    {"wireless.attack": "targeted", "wireless.target_user": 0, "wireless.jammer_power_w": 1e308},
], ids=["jammer_1e308", "tx_1e308", "noise_1e-300", "targeted_1e308"])
def test_accepted_wireless_values_evaluate_or_are_refused(changes):
    import warnings

    from rmtllmf_core.science.wireless import evaluate_uplink

    try:
        s = BASE.replace(**changes)
    except InputError:
        return  # refused with a message: fine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        users = evaluate_uplink(s.wireless).to_dict()["users"]
    assert all(math.isfinite(u["mse"]) for u in users)
