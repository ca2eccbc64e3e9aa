"""`run` and `sweep` commands: JSON out, files written, bad input -> exit 2 and one line."""
import json
import sys

import pytest

from rmtllmf_core.commands import main
from rmtllmf_core.experiment.presets import preset_dict


@pytest.fixture(scope="module")
def zoo(registered_micro_zoo):
    return registered_micro_zoo


@pytest.fixture
def scenario_file(tmp_path, zoo):
    data = preset_dict("paper_worst_sum_rate", zoo.task_names, zoo=zoo.name)
    data["evaluation"] = {"samples_per_task": 30}
    data["defense"]["realign_steps"] = 3
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    return path


def test_run_prints_the_result_as_json(scenario_file, capsys):
    assert main(["run", "--scenario", str(scenario_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["average_normalized"]) >= {"clean", "attacked", "defended"}
    assert result["wireless"]["users"][0]["mse"] > 0


def test_run_prints_a_table(scenario_file, capsys):
    assert main(["run", "--scenario", str(scenario_file)]) == 0
    assert "avg normalised" in capsys.readouterr().out


def test_sweep_writes_csv_json_and_html(scenario_file, tmp_path):
    out = tmp_path / "out"
    code = main(["sweep", "--kind", "snr", "--scenario", str(scenario_file), "--out", str(out),
                 "--attacks", "worst_sum_rate", "--defenses", "none", "--jammer-dbm=-140,-120",
                 "--workers", "1"])  # in this process: workers could not load the registered micro zoo
    assert code == 0
    rows = json.loads((out / "snr.json").read_text())
    assert [r["jammer_power_dbm"] for r in rows] == [-140.0, -120.0]
    assert rows[1]["mean_mse"] > rows[0]["mean_mse"]
    assert (out / "snr.csv").read_text().startswith("attack,defense,jammer_power_dbm")
    assert "plotly" in (out / "snr.html").read_text()[:100_000].lower()


def test_snr_sweep_rows_carry_the_rejection_rate_and_the_control(scenario_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--kind", "snr", "--scenario", str(scenario_file), "--out", str(out),
                 "--attacks", "worst_sum_rate", "--defenses", "none,rmtllmf", "--jammer-dbm=-140,-120",
                 "--workers", "1"]) == 0
    rows = json.loads((out / "snr.json").read_text())
    assert {"rejection_rate", "rejection_rate_attacked", "avg_normalized_clean_realigned"} <= set(rows[0])
    assert all(r["avg_normalized_clean_realigned"] is not None for r in rows if r["defense"] == "rmtllmf")
    printed = capsys.readouterr().out
    assert "H0 rej." in printed and "clean fusion + realign (control)" in printed


def test_gain_sweep_writes_csv_json_and_html(scenario_file, tmp_path, capsys):
    from rmtllmf_core.science.wireless.presets import PAPER_JAMMER_DBM

    out = tmp_path / "out"
    assert main(["sweep", "--kind", "gain", "--scenario", str(scenario_file), "--out", str(out),
                 "--attacks", "none,worst_sum_rate", "--defenses", "none", "--gains-db=-10,20",
                 "--workers", "1"]) == 0
    rows = json.loads((out / "gain.json").read_text())
    assert [(r["attack"], r["jammer_power_dbm"], r["symbol_gain_db"]) for r in rows] == [
        ("none", None, -10.0), ("none", None, 20.0), ("worst_sum_rate", PAPER_JAMMER_DBM, -10.0),
        ("worst_sum_rate", PAPER_JAMMER_DBM, 20.0)]
    assert (out / "gain.csv").read_text().startswith("attack,defense,jammer_power_dbm,symbol_gain_db")
    assert "plotly" in (out / "gain.html").read_text()[:100_000].lower()
    assert "symbol_gain_db" in capsys.readouterr().out


@pytest.mark.parametrize("argv, field", [
    (["--kind", "gain", "--gains-db=loud"], "gains-db"),
    (["--kind", "gain", "--jammer-dbm=-140,-120"], "jammer-dbm"),
    (["--kind", "snr", "--defenses", "nope"], "defense"),
    (["--kind", "gain", "--gains-db=10,99"], "perturb.symbol_gain_db"),
    (["--kind", "snr", "--attacks", "loud"], "wireless.attack"),
])
def test_gain_and_snr_sweeps_reject_bad_options(scenario_file, tmp_path, capsys, argv, field):
    assert main(["sweep", *argv, "--scenario", str(scenario_file), "--out", str(tmp_path), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}:")  # one line, before any progress bar


@pytest.mark.parametrize("content, field", [
    ("{not json", "scenario"),
    ("[1, 2]", "scenario"),
    ('{"tasks": ["a"], "fusion": {"lambda": 4}}', "fusion.lambda"),
    ('{"tasks": [], "zoo": "x"}', "tasks"),
])
def test_bad_scenarios_exit_2_with_one_line(tmp_path, capsys, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["run", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}:")


def test_unknown_task_exits_2(tmp_path, capsys, zoo):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"zoo": zoo.name, "tasks": ["nope"]}))
    assert main(["run", "--scenario", str(path)]) == 2
    assert "tasks:" in capsys.readouterr().err


def test_sweep_rejects_bad_lists(scenario_file, tmp_path, capsys):
    assert main(["sweep", "--kind", "snr", "--scenario", str(scenario_file), "--out", str(tmp_path),
                 "--jammer-dbm=-140,loud"]) == 2
    assert "jammer-dbm" in capsys.readouterr().err


def test_sweep_rejects_zero_workers(scenario_file, tmp_path, capsys):
    assert main(["sweep", "--kind", "snr", "--scenario", str(scenario_file), "--out", str(tmp_path),
                 "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def test_an_error_starts_on_a_line_of_its_own_after_a_progress_bar(capsys):
    from tqdm import tqdm

    from rmtllmf_core import commands

    bar = tqdm(total=10, desc="run", file=sys.stderr)
    bar.update(3)
    commands._close_progress_bars()
    print("error: evaluation.samples_per_task: ...", file=sys.stderr)
    err = capsys.readouterr().err
    assert "\nerror: evaluation.samples_per_task" in err   # not glued to the bar's last state
