"""Jammer designs: closed forms vs random feasible covariances and vs the numerical solver."""
import numpy as np
import pytest

from rmtllmf_core.science.wireless import ATTACKS, WirelessConfig, evaluate_uplink
from rmtllmf_core.science.wireless.attacks import worst_sum_rate_noise
from rmtllmf_core.science.wireless.receiver import sic_order
from rmtllmf_core.science.wireless.solver import solve_worst_jammer


def complex_normal(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def channel_cfg(h, p, s2, pj, attack, **extra):
    return WirelessConfig.parse(
        {"channel": {"re": h.real.tolist(), "im": h.imag.tolist()}, "tx_power_w": p, "noise_power_w": s2,
         "jammer_power_w": pj, "attack": attack, **extra}
    )


def random_feasible(rng, n, budget, count):
    """PSD covariances with tr = budget, of every rank (full, low, rank one)."""
    out = []
    for i in range(count):
        rank = 1 + i % n
        a = complex_normal(rng, n, rank)
        c = a @ a.conj().T
        out.append(c * (budget / np.trace(c).real))
    return out


def rates_under(h, p, s2, cj):
    """Per-user SIC rates for an arbitrary jammer covariance (plain solves)."""
    n, q = h.shape
    cz = s2 * np.eye(n) + cj
    order = np.argsort(p * np.sum(np.abs(h) ** 2, axis=0), kind="stable")
    rates = np.empty(q)
    for pos, k in enumerate(order):
        later = order[pos + 1 :]
        x = cz + (h[:, later] * p[later]) @ h[:, later].conj().T
        rates[k] = np.log1p(p[k] * np.real(h[:, k].conj() @ np.linalg.solve(x, h[:, k])))
    return rates


CASES = [(8, 4, 0.5), (4, 4, 5.0), (3, 6, 2.0), (16, 8, 50.0), (1, 3, 1.0)]


@pytest.mark.parametrize("n,q,budget", CASES)
def test_worst_sum_rate_is_never_beaten_by_random_feasible_jammers(n, q, budget):
    rng = np.random.default_rng(n * 31 + q)
    h = complex_normal(rng, n, q)
    p = rng.uniform(0.5, 2.0, q)
    s2 = 0.1
    res = evaluate_uplink(channel_cfg(h, list(p), s2, budget, "worst_sum_rate"))
    assert res.jammer_trace_w == pytest.approx(budget, rel=1e-10)
    assert np.all(res.jammer_eigen_w >= 0)
    for cj in random_feasible(rng, n, budget, 60):
        assert rates_under(h, p, s2, cj).sum() >= res.sum_rate_nats - 1e-10
    # and by every other attack at the same budget
    for attack in ATTACKS:
        if attack != "none":
            other = evaluate_uplink(channel_cfg(h, list(p), s2, budget, attack, target_user=0))
            assert other.sum_rate_nats >= res.sum_rate_nats - 1e-10


@pytest.mark.parametrize("n,q,budget", CASES)
def test_worst_sum_rate_agrees_with_the_numerical_solver(n, q, budget):
    rng = np.random.default_rng(n * 7 + q)
    h = complex_normal(rng, n, q)
    p = rng.uniform(0.5, 2.0, q)
    s2 = 0.1
    closed = evaluate_uplink(channel_cfg(h, list(p), s2, budget, "worst_sum_rate"))
    order, _ = sic_order(h, p)
    g_rev = (h * np.sqrt(p / s2))[:, order[::-1]][None]
    numeric = solve_worst_jammer(g_rev, budget / s2, "sum", iterations=300)
    assert numeric.info["objective"][0] == pytest.approx(closed.sum_rate_nats, abs=1e-6)
    assert numeric.info["gap"][0] < 1e-4  # certified
    cj = numeric.covariance()[0] * s2
    assert rates_under(h, p, s2, cj).sum() == pytest.approx(closed.sum_rate_nats, abs=1e-6)


def test_kkt_noise_levels_with_thermal_floor():
    u = np.array([[10.0, 3.0, 0.5, 0.0]])
    for budget in [0.1, 2.0, 40.0]:
        c = worst_sum_rate_noise(u, budget)[0]
        assert c.sum() == pytest.approx(budget, rel=1e-12)
        assert c[3] == 0.0 and np.all(c >= 0)
        n = 1.0 + c
        active = c > 0
        # on the active modes u / (n (n + u)) is one common price nu; inactive modes price below it
        price = u[0] / (n * (n + u[0]))
        assert np.ptp(price[active]) < 1e-9 * price[active].max()
        assert np.all(price[~active & (u[0] > 0)] <= price[active].min() * (1 + 1e-9))
    # s2 -> 0 relative to the budget: the paper's eq. (14) without the floor
    c = worst_sum_rate_noise(u[:, :3], 1e8)[0]
    nu = u[0, 0] / (c[0] * (c[0] + u[0, 0]))
    np.testing.assert_allclose(c, u[0, :3] / 2 * (np.sqrt(1 + 4 / (u[0, :3] * nu)) - 1), rtol=1e-6)


@pytest.mark.parametrize("n,q,budget", CASES)
def test_worst_strongest_user_agrees_with_the_numerical_solver_for_that_user(n, q, budget):
    rng = np.random.default_rng(n * 13 + q)
    h = complex_normal(rng, n, q)
    p = rng.uniform(0.5, 2.0, q)
    s2 = 0.1
    res = evaluate_uplink(channel_cfg(h, list(p), s2, budget, "worst_strongest_user"))
    strongest = int(np.argmax(p * np.sum(np.abs(h) ** 2, axis=0)))
    assert res.sic_rank[strongest] == q - 1
    gain = p[strongest] * np.sum(np.abs(h[:, strongest]) ** 2)
    assert res.rate_nats[strongest] == pytest.approx(np.log1p(gain / (s2 + budget)), rel=1e-12)  # eq. (15)
    direction = h[:, strongest] / np.linalg.norm(h[:, strongest])
    np.testing.assert_allclose(res.jammer_covariance, budget * np.outer(direction, direction.conj()), atol=1e-12 * budget)
    order, _ = sic_order(h, p)
    g_rev = (h * np.sqrt(p / s2))[:, order[::-1]][None]
    numeric = solve_worst_jammer(g_rev, budget / s2, "user", user_rev=np.array([0]), iterations=300)
    assert numeric.info["objective"][0] == pytest.approx(res.rate_nats[strongest], abs=1e-6)
    for cj in random_feasible(rng, n, budget, 40):
        assert rates_under(h, p, s2, cj)[strongest] >= res.rate_nats[strongest] - 1e-12


def test_targeted_aims_at_the_chosen_user():
    rng = np.random.default_rng(21)
    h = complex_normal(rng, 6, 4)
    base = evaluate_uplink(channel_cfg(h, 1.0, 0.1, 3.0, "white"))
    for target in range(4):
        res = evaluate_uplink(channel_cfg(h, 1.0, 0.1, 3.0, "targeted", target_user=target))
        d = h[:, target] / np.linalg.norm(h[:, target])
        np.testing.assert_allclose(res.jammer_covariance, 3.0 * np.outer(d, d.conj()), atol=1e-12)
        assert res.mse[target] > base.mse[target]  # beats the naive white jammer on its target


@pytest.mark.parametrize("n,q,budget", [(8, 4, 5.0), (4, 4, 2.0), (16, 8, 30.0), (3, 5, 1.0)])
def test_worst_max_user_numeric_is_a_stronger_min_max_attack(n, q, budget):
    rng = np.random.default_rng(n * 17 + q)
    h = complex_normal(rng, n, q) * 10 ** rng.uniform(-0.5, 0.5, q)
    p = rng.uniform(0.5, 2.0, q)
    s2 = 0.1
    res = evaluate_uplink(channel_cfg(h, list(p), s2, budget, "worst_max_user_numeric"), iterations=200)
    top = res.rate_nats.max()
    assert res.jammer_trace_w == pytest.approx(budget, rel=1e-9)
    assert res.solver["max_user_rate_nats"] == pytest.approx(top, abs=1e-9)
    assert 0.0 <= res.solver["certificate_gap_nats"]
    for attack in ["white", "worst_sum_rate", "worst_strongest_user"]:
        assert top <= evaluate_uplink(channel_cfg(h, list(p), s2, budget, attack)).rate_nats.max() + 1e-9
    gap = res.solver["certificate_gap_nats"]
    assert gap < 0.05  # the dual bound is tight near the optimum
    for cj in random_feasible(rng, n, budget, 60):
        worst = rates_under(h, p, s2, cj).max()
        assert top <= worst + 1e-6
        assert top - gap <= worst + 1e-9  # the certified lower bound holds for every feasible jammer
    # the certificate bounds the distance to a longer, independent run
    ref = solve_worst_jammer(
        (h * np.sqrt(p / s2))[:, sic_order(h, p)[0][::-1]][None], budget / s2, "max", iterations=1000
    ).info["objective"][0]
    assert top - ref <= res.solver["certificate_gap_nats"] + 1e-9
    assert top - ref < 0.02


def test_every_attack_spends_the_same_budget():
    rng = np.random.default_rng(8)
    h = complex_normal(rng, 5, 3)
    for attack in ATTACKS:
        res = evaluate_uplink(channel_cfg(h, 1.0, 0.1, 0.4, attack, target_user=1))
        assert res.jammer_trace_w == pytest.approx(0.0 if attack == "none" else 0.4, rel=1e-9)
        assert np.trace(res.jammer_covariance).real == pytest.approx(res.jammer_trace_w, rel=1e-9, abs=1e-15)
        np.testing.assert_allclose(res.jammer_covariance, res.jammer_covariance.conj().T, atol=1e-15)
        assert np.linalg.eigvalsh(res.jammer_covariance).min() > -1e-12
    white = evaluate_uplink(channel_cfg(h, 1.0, 0.1, 0.4, "white"))
    np.testing.assert_allclose(white.jammer_covariance, 0.08 * np.eye(5), atol=1e-15)


def test_strongest_user_tie_break_matches_the_sic_order():
    h = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 0.1]], dtype=complex)  # users 0 and 1 tie
    h[1, 1] = 0.0
    res = evaluate_uplink(channel_cfg(h, 1.0, 0.1, 2.0, "worst_strongest_user"))
    last = int(np.argmax(res.sic_rank))
    d = h[:, last] / np.linalg.norm(h[:, last])
    np.testing.assert_allclose(res.jammer_covariance, 2.0 * np.outer(d, d.conj()), atol=1e-12)
    assert res.rate_nats[last] == pytest.approx(np.log1p(1.0 / (0.1 + 2.0)))
