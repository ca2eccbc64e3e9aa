"""The Scenario: one canonical form, errors that name the field, presets as data."""
import json

import pytest

from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import SCENARIO_PRESETS, preset_dict
from rmtllmf_core.experiment.scenario import Scenario

TASKS = ("a", "b", "c")


def paper(name="paper_ideal"):
    return Scenario.parse(preset_dict(name, TASKS))


def test_round_trip_and_canonical_key():
    s = paper("paper_worst_sum_rate")
    again = Scenario.parse(json.loads(s.canonical_json()))
    assert again == s and again.key == s.key
    assert s.replace(**{"seed": 1}).key != s.key


def test_dbm_and_watt_inputs_share_one_canonical_form():
    a = paper().replace(**{"wireless.jammer_power_w": 1e-13})
    data = a.to_dict()
    del data["wireless"]["jammer_power_w"]
    data["wireless"]["jammer_power_dbm"] = -100.0
    assert Scenario.parse(data).key == a.key


def test_users_follow_tasks_unless_wireless_says():
    s = Scenario.parse({"tasks": ["x", "y"]})
    assert s.wireless.num_users == 2
    with pytest.raises(InputError) as err:
        Scenario.parse({"tasks": ["x", "y"], "wireless": {"num_users": 3}})
    assert err.value.field == "tasks"


def test_a_scenario_without_wireless_gets_the_default_scenarios_uplink():
    # one default uplink: tasks alone (a file, a link, Python) get the preset's calibrated uplink
    from rmtllmf_core.science.wireless import evaluate_uplink

    for tasks, mse in [(("digits", "textures"), 0.0167), (tuple(f"t{i}" for i in range(8)), 0.0132)]:
        s = Scenario.parse({"tasks": list(tasks)})
        assert s.wireless == Scenario.parse(preset_dict("paper_ideal", tasks)).wireless
        assert evaluate_uplink(s.wireless).average_mse == pytest.approx(mse, abs=1e-4)
    # part of the section: the rest is the default's too
    jammed = Scenario.parse({"tasks": ["x", "y"], "wireless": {"attack": "worst_sum_rate"}})
    assert jammed.wireless == Scenario.parse(preset_dict("paper_worst_sum_rate", ("x", "y"))).wireless


def test_fuse_is_canonical():
    s = paper()
    assert s.replace(fuse=["c", "a"]).fuse == ("a", "c")
    assert s.replace(fuse=list(TASKS)).fuse is None
    assert s.replace(fuse=["c", "a"]).fused_tasks == ("a", "c")


@pytest.mark.parametrize("change, field", [
    ({"fuse": ["zz"]}, "fuse"),
    ({"fusion.lambda": 3.5}, "fusion.lambda"),
    ({"fusion.method": "magic"}, "fusion.method"),
    ({"defense.shots_per_class": 0}, "defense.shots_per_class"),
    ({"defense.realign_steps": 10_000}, "defense.realign_steps"),
    ({"defense.freeze_groups": ["ln_pre"]}, "defense.freeze_groups.0"),
    ({"perturb.scale": "huge"}, "perturb.scale"),
    ({"evaluation.significance": float("nan")}, "evaluation.significance"),
    ({"seed": -1}, "seed"),
    ({"tasks": []}, "tasks"),
    ({"tasks": ["a", "a", "b"]}, "tasks"),
    ({"tasks": ["../etc", "b", "c"]}, "tasks"),
    ({"surprise": 1}, "surprise"),
    ({"wireless.jammer_power_w": -1.0}, "wireless.jammer_power_w"),
])
def test_bad_values_name_their_field(change, field):
    with pytest.raises(InputError) as err:
        paper().replace(**change)
    assert err.value.field == field, str(err.value)


def test_presets_differ_only_where_they_say():
    ideal, sr, su = (paper(n) for n in SCENARIO_PRESETS)
    assert (ideal.wireless.attack, sr.wireless.attack, su.wireless.attack) == (
        "none", "worst_sum_rate", "worst_strongest_user")
    assert ideal.defense == sr.defense == su.defense
    assert ideal.defense.freeze and ideal.defense.realign
    assert ideal.wireless.num_rx_antennas == 16 and ideal.wireless.tx_power_w == pytest.approx(1e-4)


def test_scenario_is_frozen():
    s = paper()
    with pytest.raises(Exception):
        s.seed = 3


def test_freeze_groups_are_the_layouts_embedding_groups():
    from rmtllmf_core.experiment import scenario
    from rmtllmf_core.science import taskvec

    assert scenario.EMBEDDING_GROUPS == taskvec.EMBEDDING_GROUPS


def test_the_scenario_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rmtllmf_core.experiment.scenario, rmtllmf_core.experiment.presets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
