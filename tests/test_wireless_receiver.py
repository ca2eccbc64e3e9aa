"""MMSE-SIC receiver against independent closed forms (PAPER-NOTES sec. 1)."""
import json

import numpy as np
import pytest

from rmtllmf_core.science.wireless import WirelessConfig, evaluate_uplink
from rmtllmf_core.science.wireless.attacks import white, worst_sum_rate
from rmtllmf_core.science.wireless.receiver import linear_mmse_error_covariance, sic_mmse, sic_order


def random_psd(rng, n, trace):
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    c = a @ a.conj().T
    return c * (trace / np.trace(c).real)


def complex_normal(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def channel_cfg(h, p, s2, pj=0.0, attack="none", **extra):
    return WirelessConfig.parse(
        {"channel": {"re": h.real.tolist(), "im": h.imag.tolist()}, "tx_power_w": p, "noise_power_w": s2,
         "jammer_power_w": pj, "attack": attack, **extra}
    )


def direct_rates(h, p, cz):
    """R_q = log(1 + p_q h_q^H X_q^{-1} h_q), X_q = sum_{decoded after q} p h h^H + C_z, by plain solves."""
    p = np.broadcast_to(np.asarray(p, float), (h.shape[1],))
    order = np.argsort(p * np.sum(np.abs(h) ** 2, axis=0), kind="stable")
    rates = np.empty(h.shape[1])
    for pos, q in enumerate(order):
        later = order[pos + 1 :]
        x = cz + (h[:, later] * p[later]) @ h[:, later].conj().T
        rates[q] = np.log1p(p[q] * np.real(h[:, q].conj() @ np.linalg.solve(x, h[:, q])))
    return rates


SHAPES = [(16, 8), (4, 4), (2, 5), (1, 1), (1, 4), (6, 1), (3, 12)]


@pytest.mark.parametrize("n,q", SHAPES)
@pytest.mark.parametrize("attack", ["none", "white", "worst_sum_rate", "worst_strongest_user", "targeted"])
def test_chain_rule_and_per_user_rates(n, q, attack):
    rng = np.random.default_rng(1000 * n + q)
    h = complex_normal(rng, n, q) * 10 ** rng.uniform(-1, 1, q)
    p = list(rng.uniform(0.2, 2.0, q))
    res = evaluate_uplink(channel_cfg(h, p, 0.05, pj=0.7, attack=attack, target_user=q - 1 if attack == "targeted" else None))
    cz = 0.05 * np.eye(n) + res.jammer_covariance
    s = (h * np.asarray(p)) @ h.conj().T
    _, logdet = np.linalg.slogdet(np.eye(n) + np.linalg.solve(cz, s))
    assert res.sum_rate_nats == pytest.approx(logdet, rel=1e-10, abs=1e-10)  # chain rule
    np.testing.assert_allclose(res.rate_nats, direct_rates(h, p, cz), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.mse, np.exp(-res.rate_nats), rtol=1e-12)
    np.testing.assert_allclose(res.rate_bits_per_hz, res.rate_nats / np.log(2), rtol=1e-12)
    np.testing.assert_allclose(10 ** (res.sinr_db / 10), np.expm1(res.rate_nats), rtol=1e-9)
    assert res.jammer_trace_w == pytest.approx(0.0 if attack == "none" else 0.7, rel=1e-9)


def test_sic_order_is_ascending_received_power_in_input_order():
    h = np.diag([1.0, 3.0, 2.0]).astype(complex)
    res = evaluate_uplink(channel_cfg(h, [1.0, 1.0, 1.0], 1.0))
    assert res.sic_rank.tolist() == [0, 2, 1]
    # the strongest user is decoded last and sees no interference: R = log(1 + p ||h||^2 / s2)
    assert res.rate_nats[1] == pytest.approx(np.log(1 + 9.0))


def test_single_user_and_single_antenna_closed_forms():
    rng = np.random.default_rng(3)
    h = complex_normal(rng, 5, 1)
    res = evaluate_uplink(channel_cfg(h, 2e-3, 1e-4, pj=3e-4, attack="worst_strongest_user"))
    g = 2e-3 * np.sum(np.abs(h) ** 2)
    # one user, jammer aligned with it: all of P_J lands on the user's direction
    assert res.rate_nats[0] == pytest.approx(np.log1p(g / (1e-4 + 3e-4)), rel=1e-12)
    # N_R = 1: SIC rates are scalar SINRs with the stronger users as interference
    h1 = np.array([[0.5, 2.0, 1.0 + 1.0j]])
    res1 = evaluate_uplink(channel_cfg(h1, 1.0, 0.1, pj=0.2, attack="white"))
    power = np.abs(h1[0]) ** 2
    order = np.argsort(power)
    for pos, q in enumerate(order):
        interference = power[order[pos + 1 :]].sum()
        assert res1.rate_nats[q] == pytest.approx(np.log1p(power[q] / (0.1 + 0.2 + interference)), rel=1e-12)


def test_no_jammer_and_vanishing_budget_are_the_ideal_case():
    rng = np.random.default_rng(4)
    h = complex_normal(rng, 8, 4)
    ideal = evaluate_uplink(channel_cfg(h, 1.0, 0.1))
    assert ideal.jammer_trace_w == 0.0 and np.all(ideal.jammer_eigen_w == 0.0)
    for attack in ["white", "worst_sum_rate", "worst_strongest_user", "worst_max_user_numeric"]:
        zero = evaluate_uplink(channel_cfg(h, 1.0, 0.1, pj=0.0, attack=attack))
        np.testing.assert_allclose(zero.mse, ideal.mse, rtol=1e-12)
        tiny = evaluate_uplink(channel_cfg(h, 1.0, 0.1, pj=1e-9, attack=attack))
        np.testing.assert_allclose(tiny.mse, ideal.mse, rtol=1e-6)
        assert np.all(tiny.mse >= ideal.mse * (1 - 1e-12))  # noise never helps


def test_silent_user_has_mse_one():
    h = np.array([[1.0, 0.5], [0.2, 1.0]], dtype=complex)
    res = evaluate_uplink(channel_cfg(h, [0.0, 1.0], 0.1))
    assert res.mse[0] == 1.0 and res.rate_nats[0] == 0.0 and res.sinr_db[0] == -np.inf
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))  # JSON-safe: -inf dB -> null
    assert data["users"][0]["sinr_db"] is None and data["users"][0]["mse"] == 1.0


@pytest.mark.parametrize("n,q", [(2, 4), (6, 3)])
def test_error_covariance_matches_simulated_symbols_and_noise(n, q):
    """Send random QPSK symbols and C_z noise through the MMSE-SIC receiver built from the notes'
    filters (w_q = sqrt(p_q) X_q^{-1} h_q / (1 + SINR_q), perfect cancellation); the empirical error
    covariance must match `error_covariance`, whose diagonal is the MSE."""
    rng = np.random.default_rng(10 + n)
    h = complex_normal(rng, n, q)
    p = rng.uniform(0.5, 2.0, q)
    s2 = 0.2
    res = evaluate_uplink(channel_cfg(h, list(p), s2, pj=0.5, attack="worst_sum_rate"))
    cov = res.error_covariance
    np.testing.assert_allclose(np.real(np.diag(cov)), res.mse, rtol=1e-10)
    np.testing.assert_allclose(cov, cov.conj().T, atol=1e-14)

    cz = s2 * np.eye(n) + res.jammer_covariance
    samples = 200_000
    sym = (rng.choice([-1.0, 1.0], (q, samples)) + 1j * rng.choice([-1.0, 1.0], (q, samples))) / np.sqrt(2)
    noise = np.linalg.cholesky(cz) @ complex_normal(rng, n, samples)
    y = (h * np.sqrt(p)) @ sym + noise
    order = np.argsort(p * np.sum(np.abs(h) ** 2, axis=0), kind="stable")
    err = np.empty_like(sym)
    for pos, k in enumerate(order):
        later, earlier = order[pos + 1 :], order[:pos]
        x = cz + (h[:, later] * p[later]) @ h[:, later].conj().T
        v = np.sqrt(p[k]) * np.linalg.solve(x, h[:, k])
        w = v / (1 + np.sqrt(p[k]) * np.real(h[:, k].conj() @ v))
        y_k = y - (h[:, earlier] * np.sqrt(p[earlier])) @ sym[earlier]  # perfect cancellation
        err[k] = w.conj() @ y_k - sym[k]
    empirical = err @ err.conj().T / samples
    np.testing.assert_allclose(empirical, cov, atol=6e-3)
    # orthogonality principle: with perfect SIC the users' errors are uncorrelated
    assert np.max(np.abs(cov - np.diag(np.diag(cov)))) < 1e-12


def test_joint_linear_mmse_is_worse_and_correlated():
    rng = np.random.default_rng(5)
    h = complex_normal(rng, 3, 5)
    res = evaluate_uplink(channel_cfg(h, 1.0, 0.3))
    lin = res.error_covariance_no_sic
    assert np.all(np.real(np.diag(lin)) >= res.mse - 1e-12)
    assert np.max(np.abs(lin - np.diag(np.diag(lin)))) > 1e-3


def test_batched_receiver_equals_per_draw():
    rng = np.random.default_rng(6)
    h = complex_normal(rng, 7, 5, 3)
    p = np.array([1.0, 0.5, 2.0])
    g = h * np.sqrt(p)
    _, rank = sic_order(h, p)
    for jam in (white(g, 2.0), worst_sum_rate(g, 2.0)):
        rate, mse = sic_mmse(jam.whiten(g), rank)
        for k in range(7):
            r1, _ = sic_mmse(jam.whiten(g)[k], rank[k])
            np.testing.assert_allclose(rate[k], r1, rtol=1e-12)
        cz = np.eye(5) + jam.covariance()
        for k in range(7):
            np.testing.assert_allclose(rate[k], direct_rates(h[k], p, cz[k]), rtol=1e-9)
    assert linear_mmse_error_covariance(g).shape == (7, 3, 3)


@pytest.mark.parametrize("attack", ["none", "white", "worst_sum_rate", "worst_strongest_user", "targeted", "worst_max_user_numeric"])
@pytest.mark.parametrize("noise_w,jammer_w", [(1e-50, 0.0), (1e-50, 1e3), (1e-40, 1e-16), (1.0, 1e-16), (1.0, 1e3)])
@pytest.mark.parametrize("n,q", [(16, 8), (4, 8), (1, 8)])
def test_extreme_scales_stay_finite_and_exact(attack, noise_w, jammer_w, n, q):
    """Huge or tiny SNR and budgets (Q > N_R too): no LinAlgError, MSE in (0, 1], full budget."""
    from rmtllmf_core.science.wireless import monte_carlo, preset

    cfg = preset("paper", num_users=q, num_rx_antennas=n, noise_power_w=noise_w, jammer_power_w=jammer_w,
                 attack=attack, target_user=0)
    res = evaluate_uplink(cfg, iterations=5)
    assert np.all(np.isfinite(res.mse)) and np.all((res.mse > 0) & (res.mse <= 1))
    np.testing.assert_allclose(res.mse, np.exp(-res.rate_nats), rtol=1e-12)
    assert res.jammer_trace_w == pytest.approx(0.0 if attack == "none" else jammer_w, rel=1e-9)
    mc = monte_carlo(cfg, 4, iterations=5)
    assert np.all(np.isfinite(mc.per_draw_mse))


@pytest.mark.parametrize("attack", ["none", "worst_sum_rate", "worst_max_user_numeric"])
def test_largest_accepted_values_compute(attack):
    """Every bound at its extreme at once: amplitude 1e6, 1 kW users and jammer, 1e-50 W noise."""
    rng = np.random.default_rng(2)
    h = np.clip(complex_normal(rng, 4, 6).real * 1e6, -1e6, 1e6) + 0j
    for pj in (0.0, 1e3):
        res = evaluate_uplink(channel_cfg(h, 1e3, 1e-50, pj=pj, attack=attack), iterations=5)
        assert np.all(np.isfinite(res.mse)) and np.all((res.mse > 0) & (res.mse <= 1))
        assert np.isfinite(res.sum_rate_nats)


def test_qr_fallback_agrees_with_cholesky():
    from rmtllmf_core.science.wireless import receiver

    rng = np.random.default_rng(12)
    a = complex_normal(rng, 5, 6, 4) * 30.0  # scale 900 * 6: below the limit, Cholesky path
    chol = receiver.gram_cholesky(a)
    limit = receiver._GRAM_SCALE_LIMIT
    try:
        receiver._GRAM_SCALE_LIMIT = 1.0  # force QR for every draw
        qr = receiver.gram_cholesky(a)
    finally:
        receiver._GRAM_SCALE_LIMIT = limit
    np.testing.assert_allclose(qr, chol, rtol=1e-10, atol=1e-10)
