"""The leaderboard end to end on the micro zoo: the command's files, the table's rows, the entries."""
from __future__ import annotations

import csv
import json

import pytest

from rmtllmf_core.studies import leaderboard
from rmtllmf_core.commands import main
from rmtllmf_core.errors import InputError

METHODS = "task_arithmetic,tsv_m,iso_c"


@pytest.fixture(scope="module")
def light_presets(registered_micro_zoo):
    """The paper presets on the micro zoo, made light (few samples, a short realignment, heuristic lambda)."""
    real = leaderboard.preset_scenario

    def light(name, **kw):
        return real(name, **kw).replace(**{"evaluation.samples_per_task": 20, "defense.realign_steps": 2,
                                           "defense.shots_per_class": 1, "fusion.lambda_mode": "heuristic"})

    mp = pytest.MonkeyPatch()
    mp.setattr(leaderboard, "preset_scenario", light)
    yield registered_micro_zoo
    mp.undo()


def test_leaderboard_command_writes_the_table_the_entries_and_a_reading(light_presets, tmp_path, capsys):
    zoo = light_presets
    out = tmp_path / "lb"
    assert main(["leaderboard", "--zoo", zoo.name, "--out", str(out), "--methods", METHODS, "--workers", "1"]) == 0
    with open(out / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3 * 2 * 2          # methods x channels x defenses x {plain, MSE-aware}
    assert {"method", "attack", "defense", "average_normalized", "average_absolute"} <= set(rows[0])
    assert {f"acc_{t}" for t in zoo.task_names} <= set(rows[0])
    for r in rows:
        # fractions in every machine-readable output (percent only on screen)
        assert 0.0 <= float(r["average_absolute"]) <= 1.0 and 0.0 <= float(r["average_normalized"]) <= 1.5
        assert all(0.0 <= float(r[f"acc_{t}"]) <= 1.0 for t in zoo.task_names)
    # one run gives both defenses: the clean fusion is the same number on both rows
    by = {(r["method"], r["attack"], r["mse_aware"], r["defense"]): r for r in rows}
    for (m, a, w, d), r in by.items():
        assert r["clean_normalized"] == by[(m, a, w, "none")]["clean_normalized"]
    # on the ideal channel MSE-aware fusion keeps its meaning: nearly the same as plain
    entry = json.loads((out / "entries" / "tsv_m.json").read_text())
    assert entry["reference"].startswith("Gargiulo") and entry["ours"]["zoo_fingerprint"] == zoo.fingerprint
    assert entry["published_clean"] and {c["defense"] for c in entry["ours"]["conditions"]} == {"none", "rmtllmf"}
    assert (out / "entries" / "iso_c+mse_aware.json").is_file()
    text = (out / "leaderboard.md").read_text()
    assert "| iso_c | yes |" in text and "Without noise" in text
    assert (out / "leaderboard.html").stat().st_size > 10_000
    assert "wrote 36 rows" in capsys.readouterr().out
    # all cached now: the same command computes nothing
    w = leaderboard.work(zoo.name, methods=METHODS.split(","), mse_aware=(False, True))
    assert w.missing() == 0


def test_bad_leaderboard_input_names_the_field(registered_micro_zoo, capsys):
    with pytest.raises(InputError, match="methods"):
        leaderboard.points(registered_micro_zoo.name, methods=["tsv_m", "svd_magic"])
    with pytest.raises(InputError, match="attacks"):
        leaderboard.points(registered_micro_zoo.name, attacks=["white"])
    assert main(["leaderboard", "--zoo", registered_micro_zoo.name, "--methods", "nope"]) == 2
    assert "methods" in capsys.readouterr().err


def test_methods_command_lists_the_records(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in ("task_arithmetic", "tsv_m", "iso_c", "iso_cts", "fusion.density", "Marczak", "Gargiulo"):
        assert name in text
    assert main(["methods", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    ties = next(r for r in records if r["name"] == "ties")
    assert ties["parameters"][0]["name"] == "fusion.density" and ties["parameters"][0]["bounds"] == {"gt": 0.0, "le": 1.0}


def test_reading_is_built_from_the_numbers():
    rows = []
    for m, clean, drop in (("task_arithmetic", 0.90, 0.50), ("iso_c", 0.95, 0.80)):
        for a in leaderboard.ATTACKS:
            rows.append({"method": m, "attack": a, "defense": "none", "mse_aware": False,
                         "average_normalized": clean - drop, "clean_normalized": clean, "drop_from_clean": drop})
            rows.append({"method": m, "attack": a, "defense": "rmtllmf", "mse_aware": False,
                         "average_normalized": clean - drop / 2, "clean_normalized": clean, "drop_from_clean": drop / 2})
    lines = leaderboard.reading(rows)
    assert lines[0].startswith("Without noise, Iso-C fuses best (95.0%")
    assert "task arithmetic loses least without defense (50.0 points" in lines[2]
    assert "Iso-C most (80.0 points)" in lines[2] and "R-MTLLMF, task arithmetic ends highest (65.0%)" in lines[2]


def test_story_numbers_and_warm(light_presets, monkeypatch, capsys):
    from rmtllmf_core.experiment import pipeline, presets
    from rmtllmf_core.studies import report, story

    zoo = light_presets
    real = story.preset_scenario
    monkeypatch.setattr(story, "preset_scenario", lambda name, **kw: leaderboard.preset_scenario(name, **kw))
    monkeypatch.setattr(report, "table_points", lambda z, seeds=(0,): [({}, story.scenario(story.STEPS[0], z))])
    monkeypatch.setattr(presets, "default_scenario", lambda z: story.scenario(story.STEPS[0], z))
    assert real is not None and len(story.scenarios(zoo.name)) == 3              # five steps, three runs
    assert main(["warm", "--zoo", zoo.name, "--workers", "1"]) == 0
    assert "runs in the cache" in capsys.readouterr().out
    ideal = pipeline.cached(story.scenario(story.STEPS[0], zoo.name))
    for s in story.STEPS:
        r = pipeline.cached(story.scenario(s, zoo.name))
        assert r is not None                                                      # warm computed every step
        n = story.numbers(s, r, ideal)
        assert n["drop"] == pytest.approx(n["clean"] - n["attacked"])
        text = story.narrative(s, r, ideal)
        assert "{" not in text and "nan" not in text
    with pytest.raises(InputError, match="story.step"):
        story.step("epilogue")
