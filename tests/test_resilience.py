"""Physical-layer protection (rmtllmf_core/science/phy.py, wireless engine's mismatched receiver) and the
resilience sweep: repetition's variance, the coded link's bit-error curve, the receiver that does not
know the jammer, and the sweep end to end on the micro zoo."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from rmtllmf_core.science import perturb, phy
from rmtllmf_core.studies import sweeps
from rmtllmf_core.cache import ResultCache
from rmtllmf_core.errors import InputError
from rmtllmf_core.science.taskvec import ParamLayout
from rmtllmf_core.science.wireless import WirelessConfig, evaluate_uplink


@pytest.fixture
def quick_tables(monkeypatch):
    """A coarse BER grid and few codewords: a table in seconds (the real one: under a minute)."""
    monkeypatch.setattr(phy, "SINR_GRID_DB", (-2.0, 2.0, 6.0, 10.0, 14.0))
    monkeypatch.setattr(phy, "MAX_CODEWORDS", 200)
    monkeypatch.setattr(phy, "_tables", {})


@pytest.mark.parametrize("r", [1, 2, 4, 8])
def test_repetition_gives_the_mmse_at_r_times_the_sinr(r):
    """Maximum-ratio combining of r copies: the SINR times r and the MMSE there, 1 / (1 + r SINR), for
    every error model that reads the MSE (the Gaussian draw's variance follows it); never MSE / r,
    which beats that bound (8x at 0 dB with r = 8)."""
    sinr = 10 ** (np.array([-10.0, 0.0, 7.0, 20.0, 40.0]) / 10)
    mse = 1 / (1 + sinr)                                           # the receiver's MMSE (wireless.receiver)
    eff, sinr_db = phy.repeated(mse, 10 * np.log10(sinr), r)
    assert np.allclose(eff, 1 / (1 + r * sinr), rtol=1e-6, atol=0)
    assert np.allclose(10 ** (sinr_db / 10), r * sinr, rtol=1e-9)
    assert np.all(eff >= mse / r - 1e-15)                         # the bound MSE / r broke
    dead, _ = phy.repeated(np.array([1.0, 0.0]), np.array([-np.inf, np.inf]), r)
    assert dead.tolist() == [1.0, 0.0]                             # a dead link stays dead, an ideal one ideal
    layout = ParamLayout.from_state({"w": torch.zeros(200_000)})
    lk = perturb.link(eff[1:3], perturb.Spec("gaussian", "absolute"), layout=layout, seed=3)
    noisy = perturb.perturb_slice_(torch.zeros(2, layout.numel), lk, 0)
    var = noisy.double().var(dim=1).numpy()
    # the sample variance of n normal draws: relative sd sqrt(2 / n); 5 sigma
    assert np.allclose(var, eff[1:3], rtol=5 * np.sqrt(2 / layout.numel))
    assert phy.airtime_factor("gaussian", r) == r
    with pytest.raises(InputError, match="perturb.repetition"):
        phy.airtime_factor("gaussian", 0)


def _table(ber, bler, bits=1_920_000, codewords=2000):
    """A made-up table on a 1 dB grid from 0 dB (rate 1/2, 1,920-bit codewords): 0 where nothing was seen,
    and no trials past the first error-free point, as the simulation leaves it."""
    n = len(ber)
    first = next((i for i, b in enumerate(ber) if b == 0), n)
    return {"sinr_db": [float(i) for i in range(n)], "ber": list(ber), "bler": list(bler),
            "bits": [bits if i <= first else 0 for i in range(n)],
            "codewords": [codewords if i <= first else 0 for i in range(n)],
            "k": 960, "n": 1920, "version": phy.TABLE_VERSION}


def test_the_coded_rates_never_fall_below_what_the_simulation_resolved(monkeypatch):
    table = _table([0.2, 0.05, 1e-4, 0.0, 0.0, 0.0], [1.0, 0.9, 0.02, 0.0, 0.0, 0.0])
    monkeypatch.setattr(phy, "ber_table", lambda *a, **k: table)
    ber_bound, bler_bound = phy.upper_bound(1_920_000), phy.upper_bound(2000)
    assert ber_bound == pytest.approx(-np.log(0.05) / 1_920_000, rel=1e-5)    # about 3 / N
    ber, bler = phy.coded_rates([1.0, 2.0, 2.5, 3.0, 4.0, 9.0])
    assert ber[:2].tolist() == pytest.approx([0.05, 1e-4])                    # measured points as measured
    # 0.5 dB past the last point with errors: between it and the bound, never the old cliff to 1e-300
    assert ber[2] >= ber_bound and bler[2] >= bler_bound
    assert ber[2] == pytest.approx(10 ** (0.5 * (np.log10(1e-4) + np.log10(ber_bound))))
    assert ber[3:].tolist() == pytest.approx([ber_bound] * 3)                # past it: the bound, never 0
    assert bler[3:].tolist() == pytest.approx([bler_bound] * 3)
    assert np.all(np.diff(phy.resolved_curve(table)) <= 0)                 # monotone
    # a bound above the previous point's estimate is cut to it (the rate cannot rise with the SINR)
    coarse = _table([0.2, 1e-7, 0.0], [1.0, 1e-3, 0.0])
    assert phy.resolved_curve(coarse).tolist() == pytest.approx([0.2, 1e-7, 1e-7])


def _coded_link(errors, ber, bler, n_params=60_000, seed=0):
    layout = ParamLayout.from_state({"w": torch.zeros(n_params)})
    x = torch.linspace(-1, 1, n_params).reshape(1, -1)
    lk = perturb.Link(model="coded", seed=seed, users=(0,), mse=np.array([0.1]), std=None, factor=None,
                      sinr=np.array([10.0]), bits=12, coded=(perturb.CodedLink(ber, bler, 960, errors),))
    return x, perturb.perturb_slice_(x.clone(), lk, 0), layout


def test_failed_codewords_garble_whole_blocks_at_the_same_mean_ber():
    ber, bler = 2e-3, 0.05
    x, independent, _ = _coded_link("independent", ber, bler)
    _, codeword, _ = _coded_link("codeword", ber, bler)
    step = 2 / 4095
    wrong_i = ((independent - x).abs() > step).reshape(-1, 80).any(1)     # 80 twelve-bit words per codeword
    wrong_c = ((codeword - x).abs() > step).reshape(-1, 80).any(1)
    blocks = wrong_c.numel()
    # codewords: about BLER of the blocks hold every error; independent flips touch most blocks
    assert abs(wrong_c.float().mean() - bler) < 5 * np.sqrt(bler / blocks)
    assert wrong_i.float().mean() > 0.8
    # the same mean number of wrong words either way (the same BER, clustered or not)
    n_i = int(((independent - x).abs() > step).sum())
    n_c = int(((codeword - x).abs() > step).sum())
    assert abs(n_c - n_i) < 0.25 * n_i
    # a receiver that detects failures erases them: zeros, whole blocks, nothing else touched
    _, erased, _ = _coded_link("erasure", ber, bler)
    zero = (erased == 0).reshape(-1, 80)
    moved = ((erased - x).abs() > step).reshape(-1, 80)
    assert torch.equal(moved.any(1), zero.all(1) & moved.any(1))
    assert abs(zero.all(1).float().mean() - bler) < 5 * np.sqrt(bler / blocks)


def test_the_coded_error_field_is_named_when_wrong():
    from rmtllmf_core.experiment.presets import preset_scenario

    with pytest.raises(InputError, match="perturb.coded_errors"):
        preset_scenario("paper_ideal").replace(**{"perturb.coded_errors": "harq"})
    layout = ParamLayout.from_state({"w": torch.zeros(10)})
    with pytest.raises(InputError, match="perturb.coded_errors.*codeword, erasure, independent"):
        perturb.link([0.1], perturb.Spec("coded", "absolute"), layout=layout, seed=0, sinr_db=[5.0],
                     coded=[perturb.CodedLink(0.1, 0.5, 960, "harq")])


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
    ber, bler = np.array(table["ber"]), np.array(table["bler"])
    assert np.all(np.diff(ber) <= 0) and ber[0] > 0.1 and ber[-1] == 0.0   # monotone, from noise to none
    assert np.all(bler >= ber) and bler[0] == 1.0 and np.all(np.diff(bler) <= 0)  # a block fails if a bit does
    # where the code works (16-QAM rate 1/2 past about 7 dB), far below uncoded 16-QAM's BER
    uncoded_10db = 3 / 8 * 2 * perturb.q_function(np.sqrt(3 * 10.0 / 15))  # Gray 16-QAM, nearest neighbours
    assert phy.coded_ber([10.0], "1/2", 4, cache=cache)[0] < 1e-3 * uncoded_10db
    assert phy.ber_table("1/2", 4, cache=ResultCache(tmp_path / "c")) == table  # from the disk cache the second time
    # the coded link flips bits at that rate: a clean link leaves a tensor as its quantisation does
    layout = ParamLayout.from_state({"w": torch.zeros(1000)})
    x = torch.linspace(-1, 1, 1000).repeat(1, 1)
    def coded(sinr_db):
        ber, bler = phy.coded_rates([sinr_db], "1/2", 4, cache=cache)
        return [perturb.CodedLink(float(ber[0]), float(bler[0]), phy.block_bits("1/2"), "codeword")]

    clean = perturb.link([1e-6], perturb.Spec("coded", "absolute"), layout=layout, seed=0, sinr_db=[40.0],
                         coded=coded(40.0))
    assert 0 < clean.ber[0] <= phy.resolved_curve(table)[-1] * (1 + 1e-9)  # error-free: the resolved bound, not 0
    assert torch.allclose(perturb.perturb_slice_(x.clone(), clean, 0), x, atol=2 / 4095)
    noisy = perturb.link([0.5], perturb.Spec("coded", "absolute"), layout=layout, seed=0, sinr_db=[-2.0],
                         coded=coded(-2.0))
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
    from rmtllmf_core.experiment import presets
    from rmtllmf_core.studies.work import execute

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
    from rmtllmf_core.experiment import presets
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
    from rmtllmf_core.science.wireless.geometry import BS_HEIGHT_M, UT_HEIGHT_M, pathloss_db

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


def test_the_shipped_tables_are_current_and_agree_with_a_fresh_simulation(monkeypatch):
    """`python -m rmtllmf_core ldpc-tables` made rmtllmf_core's ldpc_tables.json: every code of the sweep
    is there under the simulator's current key (none is simulated at run time), and one waterfall point
    agrees with 200 fresh codewords within the binomial spread."""
    tables = sweeps.ldpc_tables(cache=None, build=False)
    assert len(tables) == sum(o["perturb.model"] == "coded" for o in sweeps.PHY_OPTIONS)
    shipped = phy.ber_table("1/2", 4, cache=None, build=False)
    grid = shipped["sinr_db"]
    i = next(j for j, b in enumerate(shipped["bler"]) if 0.2 < b < 0.9)     # inside the waterfall
    monkeypatch.setattr(phy, "SINR_GRID_DB", (grid[i],))
    monkeypatch.setattr(phy, "MAX_CODEWORDS", 200)
    monkeypatch.setattr(phy, "MIN_BLOCK_ERRORS", 10**9)
    monkeypatch.setattr(phy, "FIRST_BATCH", 100)
    monkeypatch.setattr(phy, "BATCH", 100)
    fresh = phy._simulate(phy.check_code("1/2", 4)[0], 4, seed=7)
    p = shipped["bler"][i]
    assert fresh["codewords"] == [200]
    assert abs(fresh["bler"][0] - p) < 4 * np.sqrt(p * (1 - p) / 200) + 1 / 200
