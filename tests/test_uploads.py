"""Uploads: scenario JSON files (size, JSON only, NaN refused, caps) and user task vectors
(safetensors only, never unpickled, names/shapes/dtypes against the zoo, finite, sane size)."""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile

import pytest
import torch
from safetensors.torch import save as st_save

from micro_zoo import build_micro_clip
from rmtllmf_core.serve import uploads
from rmtllmf_core.errors import CapExceeded, InputError
from rmtllmf_core.serve.hosting import HostLimits
from rmtllmf_core.experiment.scenario import Scenario

LIM = HostLimits.parse({"max_upload_bytes": 4096, "max_vector_upload_bytes": 2 * 2**20, "max_samples_per_task": 500})


@pytest.fixture(scope="module")
def base_state():
    enc = build_micro_clip(seed=0).visual
    return {n: p.detach().clone() for n, p in enc.named_parameters()}


@pytest.fixture(autouse=True)
def never_unpickle(monkeypatch):
    """Any attempt to unpickle during these tests fails them."""
    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle an upload")
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def vector(base_state, scale=1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(p.shape, generator=g) for n, p in base_state.items()}


def load(data, base_state, **kw):
    return uploads.load_task_vector(data, base_state, lim=LIM, **kw)


# ---- task vectors ---------------------------------------------------------------------------------

def test_a_valid_task_vector_loads_in_the_zoo_order(base_state):
    tv = vector(base_state)
    out = load(st_save(dict(reversed(list(tv.items())))), base_state)
    assert list(out) == list(base_state)
    assert all(torch.equal(out[n], tv[n]) and out[n].dtype == torch.float32 for n in tv)


def test_half_precision_and_fine_tuned_weights(base_state):
    tv = vector(base_state)
    out = load(st_save({n: t.half() for n, t in tv.items()}), base_state)
    assert all(torch.allclose(out[n], tv[n], atol=1e-6, rtol=1e-3) for n in tv)
    finetuned = {n: base_state[n] + tv[n] for n in tv}
    out = load(st_save(finetuned), base_state, kind="finetuned")
    assert all(torch.allclose(out[n], tv[n], atol=1e-6) for n in tv)
    with pytest.raises(InputError) as err:
        load(st_save(finetuned), base_state, kind="weights")
    assert err.value.field == "kind"


def test_wrong_names_are_refused_naming_them(base_state):
    tv = vector(base_state)
    first = next(iter(tv))
    missing = {n: t for n, t in tv.items() if n != first}
    with pytest.raises(InputError, match=f"missing 1 .*{first}"):
        load(st_save(missing), base_state)
    with pytest.raises(InputError, match="not in the zoo's encoder .*text.weight"):
        load(st_save({**tv, "text.weight": torch.zeros(2)}), base_state)


def test_wrong_shape_and_dtype_are_refused_naming_the_tensor(base_state):
    tv = vector(base_state)
    name = next(n for n, t in tv.items() if t.dim() == 2)
    bad = {**tv, name: tv[name].T.contiguous()}
    with pytest.raises(InputError) as err:
        load(st_save(bad), base_state)
    assert err.value.field == f"file[{name}]" and "shape" in str(err.value)
    bad = {**tv, name: torch.zeros_like(tv[name], dtype=torch.int32)}
    with pytest.raises(InputError, match="dtype"):
        load(st_save(bad), base_state)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_refused(base_state, poison):
    tv = vector(base_state)
    name = list(tv)[-1]
    tv[name].view(-1)[0] = poison
    with pytest.raises(InputError, match="NaN or infinite") as err:
        load(st_save(tv), base_state)
    assert err.value.field == f"file[{name}]"


def test_float64_beyond_float32_and_absurd_magnitudes_are_refused(base_state):
    tv = {n: t.double() for n, t in vector(base_state).items()}
    name = list(tv)[0]
    tv[name].view(-1)[0] = 1e300
    with pytest.raises(InputError, match="beyond float32"):
        load(st_save(tv), base_state)
    tv = vector(base_state)
    tv[name].view(-1)[0] = 1e6
    with pytest.raises(InputError, match="did you upload the weights"):
        load(st_save(tv), base_state)


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_and_torch_archives_are_refused_unread(base_state):
    tv = vector(base_state)
    for protocol in (2, 4, 5):
        with pytest.raises(InputError, match="pickle"):
            load(pickle.dumps({"x": Exploit(), **tv}, protocol=protocol), base_state)
    with pytest.raises(InputError, match="not a safetensors file"):
        load(pickle.dumps(tv, protocol=0), base_state)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:   # what torch.save writes
        z.writestr("archive/data.pkl", pickle.dumps([1], protocol=2))
    with pytest.raises(InputError, match="zip archive"):
        load(archive.getvalue(), base_state)


def test_oversize_files_are_refused_before_reading(base_state):
    with pytest.raises(CapExceeded) as err:
        load(b"\0" * (LIM.max_vector_upload_bytes + 1), base_state)
    assert err.value.field == "file" and "at most 2 MB" in str(err.value)


def header_file(header: dict, body: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


@pytest.mark.parametrize("data", [
    b"", b"\x00" * 7, b"not a tensor file at all", struct.pack("<Q", 10**12) + b"{}",
    header_file({"a": 1}), header_file([]), struct.pack("<Q", 4) + b"{\xff\xfe}",
    struct.pack("<Q", 3) + b"NaN",
])
def test_garbage_is_refused(base_state, data):
    with pytest.raises(InputError):
        load(data, base_state)


def test_lying_headers_are_refused(base_state):
    tv = vector(base_state)
    good = st_save(tv)
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    name = next(iter(base_state))
    lo, hi = header[name]["data_offsets"]
    for lie in ([lo, hi + 4], [lo, lo], [hi, lo], [-4, hi], [lo, 10**15], "0-4"):
        forged = {**header, name: {**header[name], "data_offsets": lie}}
        with pytest.raises(InputError):
            load(header_file(forged, good[8 + n:]), base_state)
    with pytest.raises(InputError):
        load(good[: len(good) - 16], base_state)   # truncated


def test_accepts_a_file_like_upload(base_state):
    tv = vector(base_state)
    assert set(load(io.BytesIO(st_save(tv)), base_state)) == set(tv)


# ---- scenario files -------------------------------------------------------------------------------

def scn_bytes(**extra) -> bytes:
    return json.dumps({"tasks": ["digits", "textures"], **extra}).encode()


def test_scenario_file_round_trip_and_result_files():
    s = uploads.load_scenario_json(scn_bytes(seed=3), lim=LIM)
    assert isinstance(s, Scenario) and s.seed == 3
    again = uploads.load_scenario_json(json.dumps(s.to_dict()), lim=LIM)
    assert again == s
    result_file = json.dumps({"scenario": s.to_dict(), "accuracy": {}}).encode()
    assert uploads.load_scenario_json(io.BytesIO(result_file), lim=LIM) == s


def test_a_scenario_file_without_tasks_takes_every_task_of_its_embedded_zoo_as_the_cli_does(tmp_path):
    from rmtllmf_core.commands.pipeline import load_scenario
    from rmtllmf_core.experiment.presets import zoo_tasks

    data = {"seed": 4, "wireless": {"attack": "worst_sum_rate"}}
    s = uploads.load_scenario_json(json.dumps(data).encode(), lim=LIM)
    assert s.tasks == zoo_tasks("tiny") and s.seed == 4
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert load_scenario(str(path)) == s                      # one rule: the app reads the file as the CLI
    with pytest.raises(InputError):                           # another zoo is never opened to list its tasks
        uploads.load_scenario_json(json.dumps({"zoo": "/etc"}).encode(), lim=LIM)


@pytest.mark.parametrize("data, field, match", [
    (b'{"tasks": ["digits"], "seed": NaN}', "file", "NaN"),
    (b'{"tasks": ["digits"], "fusion": {"lambda": Infinity}}', "file", "Infinity"),
    (b"\xff\xfe{}", "file", "not a JSON"),
    (b"tasks: [digits]", "file", "not a JSON"),
    (b"[1, 2]", "file", "one JSON object"),
    (b"[" * 3000 + b"]" * 3000, "file", None),
    (b'{"tasks": ["digits"], "seed": -1}', "seed", None),
    (b'{"tasks": ["digits"], "colour": "red"}', "colour", None),
    (b'{"tasks": []}', "tasks", None),
])
def test_bad_scenario_files_name_what_is_wrong(data, field, match):
    with pytest.raises(InputError, match=match) as err:
        uploads.load_scenario_json(data, lim=LIM)
    assert err.value.field == field


def test_scenario_file_size_and_caps():
    with pytest.raises(CapExceeded) as err:
        uploads.load_scenario_json(scn_bytes(pad="x" * 5000), lim=LIM)
    assert err.value.field == "file" and "4 kB" in str(err.value)
    with pytest.raises(CapExceeded) as err:
        uploads.load_scenario_json(scn_bytes(evaluation={"samples_per_task": 600}), lim=LIM)
    assert err.value.field == "evaluation.samples_per_task" and "at most 500" in str(err.value)


def test_a_downloaded_scenario_speaks_dbm_and_reopens_to_the_same_scenario():
    from rmtllmf_core.experiment.codec import file_dict
    from rmtllmf_core.experiment.presets import PRESETS, preset_scenario

    from rmtllmf_core.science.wireless.config import dbm_to_w

    for name in PRESETS:  # powers as the app's controls set them: from dBm
        s = preset_scenario(name)
        for changes in ({}, {"wireless.tx_power_w": [dbm_to_w(20.0), dbm_to_w(-7.35)]},
                        {"wireless.jammer_power_w": dbm_to_w(-117.3)}):
            scn = s.replace(**changes) if "tx_power_w" not in str(changes) else s.replace(
                **{"tasks": list(s.tasks[:2]), "wireless.num_users": 2, **changes})
            data = file_dict(scn)
            assert "jammer_power_dbm" in data["wireless"] and "jammer_power_w" not in data["wireless"]
            assert "tx_power_dbm" in data["wireless"]
            assert uploads.load_scenario_json(json.dumps(data).encode(), lim=LIM) == scn   # the same scenario
    odd = preset_scenario("paper_ideal").replace(**{"wireless.jammer_power_w": 3.3e-17})  # no dBm reads back to it
    assert file_dict(odd)["wireless"]["jammer_power_w"] == 3.3e-17                     # kept in watts, exact
