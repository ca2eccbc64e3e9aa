"""The defense arena (studies/arena.py): adaptive jammers keep the power budget, an adaptive cell is never
kinder than its non-adaptive one, the rows come back identical when recomputed, bad input is refused by
its field in the core, the CLI and the app; the whole command on the micro zoo."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.experiment.presets import preset_scenario
from rmtllmf_core.science import defenses, jamming, perturb
from rmtllmf_core.science.taskvec import ParamLayout
from rmtllmf_core.studies import arena


def test_skipping_the_reloaded_tensors_keeps_the_average_power():
    sizes = np.array([24_576, 2_176, 128, 49_152, 16_384, 384])
    reloaded = np.array([True, True, True, False, False, False])
    a = jamming.allocation_factors(sizes, reloaded, "skip_frozen")
    assert np.all(a[reloaded] == 0) and np.all(a[~reloaded] > 1)
    assert jamming.average_power_factor(sizes, a) == pytest.approx(1.0, rel=1e-12)
    assert np.all(jamming.allocation_factors(sizes, reloaded, "uniform") == 1)
    assert np.all(jamming.allocation_factors(sizes, np.zeros(6, bool), "skip_frozen") == 1)  # nothing to skip


def test_the_jammer_under_the_gate_never_exceeds_its_budget():
    mse = lambda a: 0.02 + 0.3 * a                     # grows with the power, as the uplink's does
    a = jamming.power_under_gate(mse, 0.1)
    assert 0 < a < 1 and mse(a) < 0.1 and mse(a + 2e-3) >= 0.1
    assert jamming.power_under_gate(mse, 0.5) == 1.0   # the full budget is already under it
    assert jamming.power_under_gate(mse, 0.01) == 0.0  # thermal noise alone reaches it
    assert jamming.power_under_gate(mse, 0.0) == 1.0   # no gate


def test_a_striped_error_keeps_the_variance_and_repeats_on_every_row():
    layout = ParamLayout.from_state({"w": torch.zeros(512, 128)})
    std = 0.1
    for share in (0.0, 0.6, 1.0):
        for signed in (False, True):
            stripes = perturb.stripes_for(np.full((1, 1), share), layout, signed)
            errors = []
            for seed in range(20):   # a replayed row is 128 draws: its variance is seen over many drops
                lk = perturb.link([0.2], perturb.Spec("gaussian", "absolute"), layout=layout, seed=seed, stripes=stripes)
                lk = perturb.Link(**{**lk.__dict__, "std": torch.full((1, 1), std)})
                errors.append(perturb.perturb_slice_(torch.zeros(1, layout.numel), lk, 0)[0].double())
            # the same per-entry variance as white noise, whatever the share (the jammer's power per symbol)
            assert torch.stack(errors).square().mean().item() == pytest.approx(std ** 2, rel=0.1), (share, signed)
            rows = errors[0].view(512, 128)
            # a share rho of it is one row pattern (times a sign per row): rank one, seen in the row covariance
            corr = torch.corrcoef(rows[:2])[0, 1].abs().item()
            assert corr == pytest.approx(share, abs=0.15), (share, signed, corr)


def test_an_adaptive_cell_is_never_kinder_than_its_non_adaptive_one():
    points = []
    for seed, (white, rows, signed) in enumerate([(0.6, 0.5, 0.7), (0.62, 0.52, 0.4), (0.58, 0.54, 0.8)]):
        for strategy, v in (("white", white), ("row_periodic", rows), ("row_signed", signed)):
            points.append({"attack": "worst_sum_rate", "defense": "rmtllmf", "strategy": strategy, "seed": seed,
                           "avg_normalized": v, "airtime_factor": 1.0})
    points += [{**p, "defense": "none", "avg_normalized": 0.1 + (p["strategy"] != "white")} for p in points[:3]]
    cells = {c["defense"]: c for c in arena.arena_cells(points)}
    c = cells["rmtllmf"]
    # one strategy for the cell (the lowest mean over the seeds), not the worst seed by seed
    assert c["adaptive_strategy"] == "row_periodic" and c["adaptive"] == pytest.approx(np.mean([0.5, 0.52, 0.54]))
    assert c["non_adaptive"] == pytest.approx(0.6) and c["gap"] == pytest.approx(0.6 - 0.52)
    assert cells["none"]["adaptive"] == cells["none"]["non_adaptive"]   # adaptation that hurts less is not taken
    rows = arena.arena_rows(points)
    assert {(r["adaptive"], r["strategy"]) for r in rows if r["defense"] == "rmtllmf"} == {
        (False, "white"), (True, "row_periodic")}


def test_bad_input_is_refused_by_its_field_in_the_core_and_the_cli(capsys):
    from rmtllmf_core.commands import main

    s = preset_scenario("paper_worst_sum_rate")
    for change, field in (({"defense.receiver": ["wiener"]}, "defense.receiver"),
                          ({"defense.spectral_shrinker": "soft"}, "defense.spectral_shrinker"),
                          ({"jammer.structure": "columns"}, "jammer.structure"),
                          ({"jammer.allocation": "all_in"}, "jammer.allocation")):
        with pytest.raises(InputError, match=field.replace(".", r"\.")):
            s.replace(**change)
    with pytest.raises(InputError, match="defense.*spectral.*rmtllmf"):
        arena.arena_points("tiny", defenses=["svd+rmtllmf"])
    with pytest.raises(InputError, match="attack.*worst_sum_rate"):
        arena.arena_points("tiny", attacks=["barrage"])
    assert main(["arena", "--defenses", "spectrall", "--out", "/nonexistent"]) == 2
    assert "defense" in capsys.readouterr().err
    assert main(["arena", "--attacks", "barrage", "--out", "/nonexistent"]) == 2
    assert "worst_strongest_user" in capsys.readouterr().err
    with pytest.raises(ValueError, match="each at most once"):
        defenses.parse("rmtllmf+rmtllmf")


def test_a_bad_arena_value_in_a_link_is_named_in_the_app():
    from streamlit.testing.v1 import AppTest

    from pathlib import Path

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.query_params["defense.spectral_shrinker"] = "soft"
    at.query_params["jammer.structure"] = "columns"
    at.run()
    assert not at.exception
    text = " ".join(str(e.value) for e in [*at.error, *at.warning, *at.markdown, *at.caption])
    assert "defense.spectral_shrinker" in text and "jammer.structure" in text


@pytest.fixture
def cheap_presets(monkeypatch):
    from rmtllmf_core.experiment import presets

    real = presets.preset_scenario
    monkeypatch.setattr(presets, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "evaluation.samples_per_task": 20, "defense.realign_steps": 2, "defense.shots_per_class": 1,
        "fusion.lambda_mode": "heuristic"}))


def test_the_arena_on_the_micro_zoo_recomputes_the_same_rows(registered_micro_zoo, cheap_presets, tmp_path):
    from rmtllmf_core.studies.work import execute

    zoo = registered_micro_zoo
    picks = dict(seeds=(0, 1), defenses=("none", "rmtllmf", "spectral+rmtllmf"), attacks=("none", "worst_sum_rate"))
    first = execute(arena.arena_work(zoo.name, **picks), cache=ResultCache(tmp_path / "a"))
    again = execute(arena.arena_work(zoo.name, **picks), cache=ResultCache(tmp_path / "b"))   # computed anew
    strip = lambda rows: [{k: v for k, v in r.items() if k != "key"} for r in rows]
    assert strip(first) == strip(again)
    cells = arena.arena_cells(first)
    assert {(c["attack"], c["defense"]) for c in cells} == {(a, d) for a in picks["attacks"] for d in picks["defenses"]}
    assert all(c["adaptive"] <= c["non_adaptive"] for c in cells)
    rows = arena.arena_rows(first)
    assert all(0.0 <= r["average_normalized"] <= 1.5 and r["airtime_factor"] == 1.0 for r in rows)


def test_the_arena_command_writes_its_table(registered_micro_zoo, cheap_presets, tmp_path, capsys):
    from rmtllmf_core.commands import main

    out = tmp_path / "arena"
    assert main(["arena", "--zoo", registered_micro_zoo.name, "--out", str(out), "--seeds", "0", "--workers", "1",
                 "--defenses", "none,rmtllmf,spectral", "--attacks", "none,worst_sum_rate"]) == 0
    with open(out / "arena.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:6] == ["attack", "adaptive", "defense", "seed", "average_normalized", "airtime_factor"]
    assert {r["attack"] for r in rows} == {"none", "worst_sum_rate"}
    assert {r["adaptive"] for r in rows} == {"True", "False"}
    assert {r["defense"] for r in rows} == {"none", "rmtllmf", "spectral"}
    assert all(0.0 <= float(r["average_normalized"]) <= 1.5 for r in rows)
    assert (out / "arena.md").read_text().startswith("# The defense arena")
    assert (out / "arena.html").stat().st_size > 10_000
