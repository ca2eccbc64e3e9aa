"""The app's URL codec and field metadata: exact round trips, compact links, hostile input refused."""
import json

import pytest

from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import SCENARIO_PRESETS, preset_scenario
from rmtllmf_core.experiment.scenario import Scenario
from studio import codec, fields

TASKS = ("digits", "house_numbers", "traffic_signs", "textures")


@pytest.fixture(scope="module")
def default():
    return preset_scenario("paper_ideal", tasks=TASKS)


def variants(default):
    yield default
    for name in SCENARIO_PRESETS:
        yield preset_scenario(name, tasks=TASKS)
    yield default.replace(**{"wireless.attack": "white", "wireless.jammer_power_w": 1.2345678901234e-13,
                             "fusion.lambda": 0.37, "fusion.lambda_mode": "fixed", "seed": 7})
    yield default.replace(**{"wireless.distances_m": [120.5, 300.0, 999.9, 450.25],
                             "wireless.angles_deg": [0.0, -90.0, 45.5, 180.0],
                             "wireless.tx_power_w": [1e-4, 2e-4, 5e-5, 1e-4]})
    yield default.replace(**{"wireless.attack": "targeted", "wireless.target_user": 2, "fuse": ["digits", "textures"]})
    yield default.replace(**{"defense.freeze_groups": ["positional_embedding"], "perturb.model": "digital",
                             "perturb.bits_per_param": 6, "wireless.noise_power_w": None})
    yield Scenario.parse({**default.to_dict(), "tasks": ["digits", "textures"],
                          "wireless": {**default.wireless.to_dict(), "num_users": 2}})


def test_default_gives_an_empty_query(default):
    assert codec.to_query(default, default) == {}


def test_round_trip_is_exact(default):
    for scn in variants(default):
        query = codec.to_query(scn, default)
        back = codec.from_query(query, default)
        assert back == scn
        assert back.canonical_json() == scn.canonical_json()


def test_round_trip_through_a_real_query_string(default):
    from urllib.parse import parse_qsl, urlencode

    for scn in variants(default):
        text = urlencode(codec.to_query(scn, default))
        assert codec.from_query(dict(parse_qsl(text, keep_blank_values=True)), default) == scn


def test_links_are_compact_and_readable(default):
    scn = default.replace(**{"wireless.attack": "white", "fusion.lambda": 0.4, "fusion.lambda_mode": "fixed"})
    assert codec.to_query(scn, default) == {"fusion.lambda": "0.4", "fusion.lambda_mode": "fixed", "wireless.attack": "white"}


def test_powers_travel_in_dbm_as_the_app_shows_them(default):
    from studio.widgets import watts

    scn = default.replace(**{"wireless.jammer_power_w": watts(-131.5), "wireless.tx_power_w": [watts(20.0)] * 4})
    query = codec.to_query(scn, default)
    assert query == {"wireless.jammer_power_dbm": "-131.5", "wireless.tx_power_dbm": "[20,20,20,20]"}
    assert codec.from_query(query, default) == scn
    # a power no short dBm number gives back stays in watts with the same exact round trip, and links
    # made in watts still open
    odd = default.replace(**{"wireless.jammer_power_w": 1.2345678901234e-13})
    assert codec.from_query(codec.to_query(odd, default), default) == odd
    assert codec.from_query({"wireless.jammer_power_w": "1e-16"}, default).wireless.jammer_power_w == 1e-16
    # a bad dBm value names its own field and keeps the rest of the link
    kept, errors = codec.from_query_keeping({"wireless.jammer_power_dbm": "999", "seed": "3"}, default)
    assert kept.seed == 3 and [e.field for e in errors] == ["wireless.jammer_power_dbm"]


def test_strings_that_look_like_json_are_quoted():
    for text in ("true", "null", "1", "[1]", '"x"', "white", "", "1e999", "NaN"):
        assert codec.decode_value(codec.encode_value(text)) == text
    assert codec.encode_value("white") == "white"
    assert codec.encode_value("true") == '"true"'
    assert codec.decode_value('["a","b"]') == ["a", "b"]


def test_ui_params_are_not_part_of_the_scenario(default):
    assert codec.from_query({"presenter": "1"}, default) == default


def test_repeated_key_takes_the_last_value(default):
    scn = codec.from_query({"wireless.attack": ["white", "worst_sum_rate"]}, default)
    assert scn.wireless.attack == "worst_sum_rate"


@pytest.mark.parametrize("params, field", [
    ({"wireless.jammer_power_w": "-5"}, "wireless.jammer_power_w"),
    ({"wireless.jammer_power_w": "NaN"}, "wireless.jammer_power_w"),
    ({"wireless.jammer_power_w": "1e999"}, "wireless.jammer_power_w"),
    ({"wireless.jammer_power_w": "lots"}, "wireless.jammer_power_w"),
    ({"wireless.attack": "nuke"}, "wireless.attack"),
    ({"wireless.num_rx_antennas": "0"}, "wireless.num_rx_antennas"),
    ({"fusion.lambda": "3.5"}, "fusion.lambda"),
    ({"defense.shots_per_class": "1.5"}, "defense.shots_per_class"),
    ({"wireless.made_up": "1"}, "wireless.made_up"),
    ({"tasks": "[]"}, "tasks"),
    ({"tasks": '["digits","digits"]'}, "tasks"),
    ({"": "1"}, "url"),
    ({"a..b": "1"}, "a..b"),
    ({"seed": "x" * 30_000}, "seed"),
])
def test_bad_values_are_refused_naming_the_field(default, params, field):
    with pytest.raises(InputError) as info:
        codec.from_query(params, default)
    assert info.value.field.startswith(field)


def test_too_many_parameters_are_refused(default):
    with pytest.raises(InputError):
        codec.from_query({f"x{i}": "1" for i in range(codec.MAX_PARAMS + 1)}, default)


def test_flatten_and_set_path():
    data = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None, "f": {}}
    flat = codec.flatten(data)
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "e": None, "f": {}}
    rebuilt: dict = {"e": 5}
    for key, value in flat.items():
        codec.set_path(rebuilt, key, value)
    assert rebuilt == data
    json.dumps(rebuilt)


def test_widget_bounds_come_from_the_scenario_fields():
    assert fields.bounds(Scenario, "fusion.lambda") == {"min_value": 0.0, "max_value": 3.0}
    assert fields.bounds(Scenario, "defense.shots_per_class") == {"min_value": 1, "max_value": 20}
    assert fields.bounds(Scenario, "wireless.num_rx_antennas")["min_value"] == 1
    assert "worst_sum_rate" in fields.choices(Scenario, "wireless.attack")
    assert set(fields.choices(Scenario, "defense.freeze_groups")) >= {"patch_embedding"}
    assert fields.help_text(Scenario, "fusion.lambda")
    with pytest.raises(KeyError):
        fields.field_info(Scenario, "wireless.nope")


def test_a_link_that_sets_only_the_tasks_gets_one_user_per_task(default):
    two = codec.from_query({"tasks": '["digits","textures"]'}, default)
    assert two.tasks == ("digits", "textures") and two.wireless.num_users == 2
    assert two == Scenario.parse({"tasks": ["digits", "textures"]})  # as a file holding only tasks
    # a link that places its users keeps them, and a mismatch is named
    with pytest.raises(InputError) as err:
        codec.from_query({"tasks": '["digits","textures"]', "wireless.num_users": "3"}, default)
    assert err.value.field == "tasks"


def test_from_query_keeping_keeps_the_valid_and_names_the_bad():
    from rmtllmf_core.experiment.presets import default_scenario

    default = default_scenario()
    scn, errs = codec.from_query_keeping({"wireless.attack": "white", "fusion.lambda": "9", "seed": "-3",
                                          "nonsense.field": "1", "presenter": "1"}, default)
    assert scn.wireless.attack == "white" and scn.seed == default.seed
    assert sorted(e.field for e in errs) == ["fusion.lambda", "nonsense.field", "seed"]
    assert all("refused" in e.reason for e in errs)
    # a value that is only valid with a later parameter is kept on the second pass
    scn, errs = codec.from_query_keeping({"wireless.attack": "targeted", "wireless.target_user": "1", "seed": "-1"},
                                         default)
    assert (scn.wireless.attack, scn.wireless.target_user) == ("targeted", 1) and [e.field for e in errs] == ["seed"]
    # a valid link is read in one go
    assert codec.from_query_keeping(codec.to_query(scn, default), default) == (scn, [])
