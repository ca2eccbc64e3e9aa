"""`python -m rmtllmf_core channel`: JSON output, readable table, exit codes on bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rmtllmf_core import commands as cli

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = {
    "channel": {"re": [[1.0, 0.2, 0.1], [0.1, 0.9, 0.4], [0.3, -0.4, 0.8], [0.2, 0.1, -0.5]],
                "im": [[0.0, 0.1, 0.2], [0.2, 0.0, -0.3], [0.0, 0.5, 0.1], [0.1, 0.0, 0.3]]},
    "tx_power_w": 1e-4,
    "noise_power_w": 1e-6,
    "jammer_power_w": 1e-5,
    "attack": "targeted",
    "target_user": 2,
}


@pytest.fixture(autouse=True)
def only_the_channel_command(monkeypatch):
    """The real dispatcher, with only this command registered (others may import torch)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("rmtllmf_core.commands.channel",))


def main(argv):
    return cli.main(argv)


def write(tmp_path, data, name="s.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_json_output_schema(tmp_path, capsys):
    assert main(["channel", "--scenario", write(tmp_path, SCENARIO), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [u["index"] for u in out["users"]] == [0, 1, 2]
    for u in out["users"]:
        assert {"index", "sic_rank", "sinr_db", "rate_nats", "mse"} <= set(u)
        assert u["mse"] == pytest.approx(np.exp(-u["rate_nats"]))
    assert sorted(u["sic_rank"] for u in out["users"]) == [0, 1, 2]
    assert out["sum_rate_nats"] == pytest.approx(sum(u["rate_nats"] for u in out["users"]))
    assert out["jammer_trace_w"] == pytest.approx(1e-5)
    cov = np.array(out["error_covariance"]["re"]) + 1j * np.array(out["error_covariance"]["im"])
    assert cov.shape == (3, 3)
    np.testing.assert_allclose(np.diag(cov).real, [u["mse"] for u in out["users"]], rtol=1e-10)


@pytest.mark.parametrize("attack", ["none", "white", "worst_sum_rate", "worst_strongest_user", "worst_max_user_numeric"])
def test_every_attack_runs_from_the_command(tmp_path, capsys, attack):
    data = {**SCENARIO, "attack": attack}
    data.pop("target_user")
    assert main(["channel", "--scenario", write(tmp_path, data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attack"] == attack


def test_geometry_scenario_table_and_draws(tmp_path, capsys):
    data = {"num_users": 4, "num_rx_antennas": 8, "tx_power_dbm": -10, "d_min_m": 100, "d_max_m": 500,
            "jammer_power_dbm": -120, "attack": "worst_sum_rate", "seed": 3}
    path = write(tmp_path, data)
    assert main(["channel", "--scenario", path, "--draws", "50"]) == 0
    text = capsys.readouterr().out
    assert "SINR dB" in text and "sum rate" in text and "Monte Carlo over 50" in text
    assert main(["channel", "--scenario", path, "--draws", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["monte_carlo"]["draws"] == 20 and len(out["monte_carlo"]["users"]["mse"]["mean"]) == 4
    assert all("x_m" in u for u in out["users"])


def test_default_uplink_and_the_unusable_channel_warning(tmp_path, capsys):
    from rmtllmf_core.experiment.presets import preset_dict
    from rmtllmf_core.experiment.scenario import Scenario
    from rmtllmf_core.science.wireless import evaluate_uplink

    # a scenario file with only tasks: the app's default (calibrated) uplink for those users, no warning
    assert main(["channel", "--scenario", write(tmp_path, {"tasks": ["digits", "textures"]}), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    paper = Scenario.parse(preset_dict("paper_ideal", ("digits", "textures"))).wireless
    assert out["num_users"] == 2 and out["average_mse"] == pytest.approx(evaluate_uplink(paper).average_mse)
    assert "warnings" not in out
    # an empty uplink file is the default too
    assert main(["channel", "--scenario", write(tmp_path, {}), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["average_mse"] == pytest.approx(0.0132, abs=1e-4)
    # a noise-dominated uplink says so, in JSON and in the table
    bad = write(tmp_path, {"bandwidth_hz": 1e6, "noise_figure_db": 7})
    assert main(["channel", "--scenario", bad, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["average_mse"] > 0.5 and out["warnings"][0].startswith("Unusable channel")
    assert main(["channel", "--scenario", bad]) == 0
    assert "warning: Unusable channel" in capsys.readouterr().out


BAD = [
    ({**SCENARIO, "attack": "nuke"}, "wireless.attack"),
    ({**SCENARIO, "target_user": 3}, "wireless.target_user"),
    ({**SCENARIO, "tx_power_w": -1}, "wireless.tx_power_w"),
    ({**SCENARIO, "jammer_power_w": -1e-5}, "wireless.jammer_power_w"),
    ({**SCENARIO, "channel": {"re": [[1.0, 2.0], [3.0]]}}, "wireless.channel.re"),
    ({**SCENARIO, "num_users": 4}, "wireless.num_users"),
    ("{not json", "scenario"),
    ("[1, 2]", "scenario"),
    ('{"tx_power_w": NaN}', "wireless.tx_power_w"),
]


@pytest.mark.parametrize("data,field", BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, data, field):
    assert main(["channel", "--scenario", write(tmp_path, data), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: ")


def test_missing_file_and_bad_draws(tmp_path, capsys):
    assert main(["channel", "--scenario", str(tmp_path / "absent.json")]) == 2
    assert capsys.readouterr().err.startswith("error: scenario: ")
    assert main(["channel", "--scenario", write(tmp_path, SCENARIO), "--draws", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: draws: ")


def test_real_process_exit_code_and_one_line_on_bad_input(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "rmtllmf_core", "channel", "--scenario", write(tmp_path, {"attack": "x"}, "b.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: wireless.attack: ") and "Traceback" not in bad.stderr
