"""Monte Carlo: one batch over draws equals draw-by-draw evaluation; seeded; statistics."""
import numpy as np
import pytest

from rmtllmf_core.errors import InputError
from rmtllmf_core.science.wireless import ATTACKS, WirelessConfig, draw_channels, evaluate_uplink, monte_carlo, preset


@pytest.mark.parametrize("attack", ATTACKS)
def test_batch_equals_draw_by_draw(attack):
    cfg = preset("paper", num_users=4, num_rx_antennas=6, attack=attack, target_user=1, jammer_power_dbm=-125)
    mc = monte_carlo(cfg, 6)
    channels = draw_channels(cfg, 6, monte_carlo=True).channel
    for k in range(6):
        one = WirelessConfig.parse({
            "channel": {"re": channels[k].real.tolist(), "im": channels[k].imag.tolist()},
            "tx_power_w": cfg.tx_power_w, "noise_power_w": cfg.noise_power_w,
            "jammer_power_w": cfg.jammer_power_w, "attack": attack, "target_user": 1,
        })
        tol = 1e-9 if attack != "worst_max_user_numeric" else 1e-6
        np.testing.assert_allclose(mc.per_draw_mse[k], evaluate_uplink(one).mse, rtol=tol)


def test_statistics_and_seeds():
    cfg = preset("paper", attack="worst_sum_rate")
    a, b = monte_carlo(cfg, 200), monte_carlo(cfg, 200)
    np.testing.assert_array_equal(a.per_draw_mse, b.per_draw_mse)
    assert a.average_mse["mean"] == pytest.approx(a.per_draw_mse.mean())
    assert a.mse["mean"].shape == (8,)
    assert np.all(a.mse["p5"] <= a.mse["p50"]) and np.all(a.mse["p50"] <= a.mse["p95"])
    assert a.jammer_trace_w == pytest.approx(cfg.jammer_power_w)
    other = monte_carlo(WirelessConfig.parse({**cfg.to_dict(), "fading_seed": 9}), 200)
    assert not np.allclose(other.per_draw_mse, a.per_draw_mse)
    d = a.to_dict()
    assert set(d["users"]) == {"mse", "sinr_db", "rate_nats"} and len(d["users"]["mse"]["mean"]) == 8
    drops = monte_carlo(cfg, 50, vary_placement=True)
    assert drops.vary_placement and drops.per_draw_mse.shape == (50, 8)
    placed = draw_channels(cfg, 50, monte_carlo=True, vary_placement=True)
    assert np.unique(placed.distances_m[:, 0]).size == 50


def test_attack_ordering_on_the_paper_preset():
    """Equal budget: none < strongest-user ~ targeted < white < worst sum rate (average MSE)."""
    avg = {a: monte_carlo(preset("paper"), 300, attack=a).average_mse["mean"] for a in ["none", "white", "worst_sum_rate", "worst_strongest_user"]}
    assert avg["none"] < avg["worst_strongest_user"] < avg["white"] < avg["worst_sum_rate"]


@pytest.mark.parametrize("draws", [0, -1, 2.5, True, 10**7])
def test_bad_draws(draws):
    with pytest.raises(InputError) as err:
        monte_carlo(preset("paper"), draws)
    assert err.value.field == "draws"


@pytest.mark.parametrize("vary_placement", [False, True])
def test_chunking_does_not_change_results(monkeypatch, vary_placement):
    from rmtllmf_core.science.wireless import engine

    cfg = preset("paper", attack="worst_sum_rate", shadowing_std_db=4.0)
    whole = monte_carlo(cfg, 37, vary_placement=vary_placement)
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 16 * 16 * 5)  # 5 draws per chunk
    chunked = monte_carlo(cfg, 37, vary_placement=vary_placement)
    np.testing.assert_allclose(chunked.per_draw_mse, whole.per_draw_mse, rtol=1e-12)
    assert chunked.jammer_trace_w == pytest.approx(whole.jammer_trace_w)


def test_paper_preset_calibration_holds():
    """The presets' documented calibration (see wireless/presets.py), on 2,000 drops."""
    ideal = monte_carlo(preset("paper"), 2000, vary_placement=True).average_mse["mean"]
    worst = monte_carlo(preset("paper_worst_sum_rate"), 2000, vary_placement=True).average_mse["mean"]
    assert ideal == pytest.approx(0.0129, abs=0.0008)
    assert worst == pytest.approx(0.211, abs=0.006)
    assert evaluate_uplink(preset("paper")).average_mse == pytest.approx(0.0132, abs=2e-4)
    assert evaluate_uplink(preset("paper_worst_sum_rate")).average_mse == pytest.approx(0.209, abs=2e-3)
