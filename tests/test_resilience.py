"""Physical-layer protection (rmtllmf_core/phy.py, wireless engine's mismatched receiver) and the
resilience sweep: repetition's variance, the coded link's bit-error curve, the receiver that does not
know the jammer, and the sweep end to end on the micro zoo."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from rmtllmf_core import perturb, phy, sweeps
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.taskvec import ParamLayout
from rmtllmf_core.wireless import WirelessConfig, evaluate_uplink


@pytest.fixture
def quick_tables(monkeypatch):
    """A coarse BER grid and few codewords: a table in seconds (the real one: under a minute)."""
    monkeypatch.setattr(phy, "SINR_GRID_DB", (-2.0, 2.0, 6.0, 10.0, 14.0))
    monkeypatch.setattr(phy, "MAX_CODEWORDS", 200)
    monkeypatch.setattr(phy, "_tables", {})


@pytest.mark.parametrize("r", [2, 4, 8])
def test_repetition_divides_the_error_variance_by_r(r):
    layout = ParamLayout.from_state({"w": torch.zeros(200_000)})
    clean = torch.zeros(2, layout.numel)
    mse = np.array([0.2, 0.05])
    eff, sinr_db = phy.repeated(mse, 10 * np.log10(1 / mse - 1), r)
    assert np.allclose(eff, mse / r) and np.allclose(10 ** (sinr_db / 10), r * (1 / mse - 1))
    lk = perturb.link(eff, layout=layout, model="gaussian", scale="absolute", seed=3)
    noisy = perturb.perturb_slice_(clean.clone(), lk, 0)
    var = noisy.double().var(dim=1).numpy()
    # the sample variance of n normal draws: relative sd sqrt(2 / n); 5 sigma
    assert np.allclose(var, mse / r, rtol=5 * np.sqrt(2 / layout.numel))
    assert phy.airtime_factor("gaussian", r) == r
    with pytest.raises(InputError, match="perturb.repetition"):
        phy.airtime_factor("gaussian", 0)


def test_airtime_of_each_protection():
    assert phy.airtime_factor("digital", 1, 12) == 2.0                    # two 64-QAM symbols per 12-bit word
    assert phy.airtime_factor("coded", 1, 12, "1/2", 4) == 6.0            # 12 / (4 x 1/2)
    assert phy.airtime_factor("coded", 2, 12, "3/4", 8) == 4.0
    with pytest.raises(InputError, match="perturb.code_rate"):
        phy.airtime_factor("coded", 1, 12, "7/8", 4)
    with pytest.raises(InputError, match="perturb.qam_bits"):
        phy.airtime_factor("coded", 1, 12, "1/2", 5)


def test_coded_ber_falls_with_sinr_and_far_below_the_uncoded(quick_tables, tmp_path):
    cache = ResultCache(tmp_path / "c")
    table = phy.ber_table("1/2", 4, cache=cache)
    ber = np.array(table["ber"])
    assert np.all(np.diff(ber) <= 0) and ber[0] > 0.1 and ber[-1] == 0.0   # monotone, from noise to none
    # where the code works (16-QAM rate 1/2 past about 7 dB), far below uncoded 16-QAM's BER
    uncoded_10db = 3 / 8 * 2 * perturb.q_function(np.sqrt(3 * 10.0 / 15))  # Gray 16-QAM, nearest neighbours
    assert phy.coded_ber([10.0], "1/2", 4, cache=cache)[0] < 1e-3 * uncoded_10db
    assert phy.ber_table("1/2", 4, cache=ResultCache(tmp_path / "c")) == table  # from the disk cache the second time
    # the coded link flips bits at that rate: a clean link leaves a tensor as its quantisation does
    layout = ParamLayout.from_state({"w": torch.zeros(1000)})
    x = torch.linspace(-1, 1, 1000).repeat(1, 1)
    clean = perturb.link([1e-6], layout=layout, model="coded", scale="absolute", seed=0, sinr_db=[40.0],
                         code_rate="1/2", qam_bits=4)
    assert clean.ber[0] == 0.0
    assert torch.allclose(perturb.perturb_slice_(x.clone(), clean, 0), x, atol=2 / 4095)
    noisy = perturb.link([0.5], layout=layout, model="coded", scale="absolute", seed=0, sinr_db=[-2.0],
                         code_rate="1/2", qam_bits=4)
    assert (perturb.perturb_slice_(x.clone(), noisy, 0) - x).abs().mean() > 0.1


def test_a_receiver_that_does_not_know_the_jammer_never_does_better():
    for seed in range(12):
        for attack in ("worst_sum_rate", "worst_strongest_user", "white"):
            cfg = WirelessConfig.parse({"num_users": 4, "num_rx_antennas": 4, "seed": seed, "attack": attack,
                                        "jammer_power_w": 10 ** (-15 + seed % 4)})
            matched = evaluate_uplink(cfg).mse
            blind = evaluate_uplink(cfg.model_copy(update={"receiver_knows_jammer": False})).mse
            assert np.all(blind >= matched - 1e-12), (seed, attack, matched, blind)
    calm = WirelessConfig.parse({"num_users": 3, "attack": "none", "receiver_knows_jammer": False})
    assert np.allclose(evaluate_uplink(calm).mse, evaluate_uplink(calm.model_copy(
        update={"receiver_knows_jammer": True})).mse)       # no jammer: nothing to know


def test_resilience_sweep_end_to_end_on_the_micro_zoo(registered_micro_zoo, quick_tables, monkeypatch, tmp_path):
    from rmtllmf_core import presets
    from rmtllmf_core.work import execute

    zoo = registered_micro_zoo
    real = presets.preset_scenario
    monkeypatch.setattr(presets, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "evaluation.samples_per_task": 20, "defense.realign_steps": 2, "defense.shots_per_class": 1,
        "fusion.lambda_mode": "heuristic"}))
    options = (sweeps.PHY_OPTIONS[0], sweeps.PHY_OPTIONS[2],
               {"perturb.model": "coded", "perturb.code_rate": "1/2", "perturb.qam_bits": 4})
    work = sweeps.resilience_work(zoo.name, ["worst_sum_rate"], options)
    rows = execute(work, cache=ResultCache(tmp_path / "c"))
    assert [r["airtime_used"] for r in rows] == [1.0, 2.0, 6.0]
    table = sweeps.resilience_table(rows)
    assert {(r["protection"], r["airtime_factor"]) for r in table} == {
        (p, b) for p in ("none", "ai", "phy", "phy+ai") for b in sweeps.AIRTIME_BUDGETS}
    got = {(r["protection"], r["airtime_factor"]): r for r in table}
    assert got[("phy", 1)]["setting"] == "analogue" and got[("phy", 1)]["average_normalized"] == got[("none", 1)][
        "average_normalized"]                                             # nothing to buy with no airtime
    for b in sweeps.AIRTIME_BUDGETS:   # more airtime never hurts the best choice
        assert got[("phy+ai", b)]["average_normalized"] >= got[("ai", b)]["average_normalized"]
        assert got[("phy", b)]["average_normalized"] >= got[("none", b)]["average_normalized"]
        assert got[("phy+ai", b)]["airtime_used"] <= b


def test_resilience_command_writes_its_csv(registered_micro_zoo, quick_tables, monkeypatch, tmp_path, capsys):
    from rmtllmf_core import presets
    from rmtllmf_core.commands import main

    real = presets.preset_scenario
    monkeypatch.setattr(presets, "preset_scenario", lambda name, **kw: real(name, **kw).replace(**{
        "evaluation.samples_per_task": 20, "defense.realign_steps": 2, "defense.shots_per_class": 1,
        "fusion.lambda_mode": "heuristic"}))
    monkeypatch.setattr(sweeps, "PHY_OPTIONS", sweeps.PHY_OPTIONS[:2])
    out = tmp_path / "res"
    tasks = ",".join(f'"{t}"' for t in registered_micro_zoo.task_names)
    assert main(["sweep", "--kind", "resilience", "--out", str(out), "--workers", "1", "--attacks", "worst_sum_rate",
                 "--set", f"zoo={registered_micro_zoo.name}", "--set", f"tasks=[{tasks}]"]) == 0
    with open(out / "resilience.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"attack", "protection", "airtime_factor", "average_normalized", "setting"} <= set(rows[0])
    assert len(rows) == 4 * len(sweeps.AIRTIME_BUDGETS)
    assert "phy+ai" in capsys.readouterr().out


def test_an_airtime_budget_below_one_is_refused_by_name(capsys):
    from rmtllmf_core.commands import main

    with pytest.raises(InputError, match="airtime"):
        sweeps.resilience_table([], [0.5, 2])
    assert main(["sweep", "--kind", "resilience", "--airtime", "0.5,2"]) == 2
    assert "airtime" in capsys.readouterr().err


@pytest.mark.parametrize("fc", [2.0e9, 3.5e9])
def test_our_38901_path_loss_matches_sionnas_within_a_tenth_of_a_db(fc):
    """Ours is kept (numpy, batched over Monte Carlo draws, no scenario objects) and checked against
    Sionna's UMa / UMi street-canyon NLOS basic path loss. Sionna draws UMa's environment height h_E;
    for users below 13 m (ours stand at 1.5 m) it is 1 m, as in our formula."""
    tr = pytest.importorskip("sionna.phy.channel.tr38901")
    from rmtllmf_core.wireless.geometry import BS_HEIGHT_M, UT_HEIGHT_M, pathloss_db

    d = np.array([15.0, 35.0, 60.0, 120.0, 250.0, 500.0, 1000.0])
    for name, cls in (("uma_nlos", tr.UMaScenario), ("umi_nlos", tr.UMiScenario)):
        def array():
            return tr.PanelArray(num_rows_per_panel=1, num_cols_per_panel=1, polarization="single",
                                 polarization_type="V", antenna_pattern="omni", carrier_frequency=fc)
        sc = cls(carrier_frequency=fc, o2i_model="low", ut_array=array(), bs_array=array(), direction="uplink")
        z = torch.zeros(1, len(d), 3)
        sc.set_topology(ut_loc=torch.tensor([[[x, 0.0, UT_HEIGHT_M] for x in d]]),
                        bs_loc=torch.tensor([[[0.0, 0.0, BS_HEIGHT_M[name]]]]), ut_orientations=z,
                        bs_orientations=torch.zeros(1, 1, 3), ut_velocities=z,
                        in_state=torch.zeros(1, len(d), dtype=torch.bool), los=False)
        theirs = sc.basic_pathloss.numpy().reshape(-1)
        assert np.abs(theirs - pathloss_db(name, d, fc)).max() < 0.1, name


def test_more_receive_antennas_is_an_option_without_airtime(registered_micro_zoo):
    pts = sweeps.resilience_points(registered_micro_zoo.name, ["worst_sum_rate"], sweeps.PHY_OPTIONS[:2])
    (plain_row, plain), (more_row, more) = pts
    assert more.wireless.num_rx_antennas == 2 * plain.wireless.num_rx_antennas
    assert (plain_row["airtime_used"], more_row["airtime_used"]) == (1.0, 1.0)
    assert more_row["setting"] == "2x receive antennas"
