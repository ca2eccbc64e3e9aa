"""One default uplink, end to end: `run` on a scenario file holding only tasks uses the app's default
(calibrated) uplink, and a run whose channel leaves the task vectors as noise says so."""
import json

import pytest

from rmtllmf_core.commands import main
from rmtllmf_core.commands.pipeline import format_result
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.experiment.result import Result
from rmtllmf_core.science.wireless import evaluate_uplink


@pytest.fixture(scope="module")
def zoo(registered_micro_zoo):
    return registered_micro_zoo


def run_json(tmp_path, capsys, data) -> dict:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert main(["run", "--scenario", str(path), "--json", "--no-cache"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tasks_alone_get_the_default_scenarios_uplink_and_its_mse(zoo, tmp_path, capsys):
    tasks = list(zoo.task_names[:2])
    result = run_json(tmp_path, capsys, {"zoo": zoo.name, "tasks": tasks, "evaluation": {"samples_per_task": 20}})
    paper = preset_scenario("paper_ideal", tasks=tasks, zoo=zoo.name).wireless
    assert result["scenario"]["wireless"] == paper.to_dict()
    assert result["wireless"]["average_mse"] == pytest.approx(evaluate_uplink(paper).average_mse)
    assert result["wireless"]["average_mse"] < 0.05 and result["warnings"] == []


def test_a_noise_dominated_run_warns_in_the_result_and_the_table(zoo, tmp_path, capsys):
    # the schema's old default: k T B NF of 1 MHz and 7 dB, the users' vectors pure noise
    result = run_json(tmp_path, capsys, {"zoo": zoo.name, "tasks": list(zoo.task_names),
                                         "wireless": {"bandwidth_hz": 1e6, "noise_figure_db": 7},
                                         "evaluation": {"samples_per_task": 20}})
    assert result["wireless"]["average_mse"] > 0.5
    [warning] = result["warnings"]
    assert warning.startswith("Unusable channel") and "SINR per user" in warning and "transmit power" in warning
    assert f"warning: {warning}" in format_result(Result.from_json(result))
