"""The receiver's denoisers against their closed forms (rmtllmf_core denoise): Gavish-Donoho shrinkage on
pure noise and on a planted low-rank matrix, the hard threshold's constant, destriping and norm calibration."""
from __future__ import annotations

import math

import pytest
import torch

from rmtllmf_core.science import denoise


def _noise(m, n, sigma, seed):
    return sigma * torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_the_hard_threshold_is_four_over_root_three_for_square_matrices():
    assert denoise.hard_threshold(1.0) == pytest.approx(4 / math.sqrt(3), rel=1e-12)
    assert denoise.hard_threshold(0.5) < denoise.hard_threshold(1.0)


@pytest.mark.parametrize("shrinker", denoise.SHRINKERS)
@pytest.mark.parametrize("shape", [(300, 300), (400, 100), (100, 400)])
def test_pure_noise_shrinks_to_almost_nothing(shrinker, shape):
    y = _noise(*shape, sigma=0.3, seed=1)
    out = denoise.svd_shrink(y, 0.3, shrinker)
    assert out.square().sum() < 1e-3 * y.square().sum()


def test_a_planted_low_rank_matrix_comes_back_with_the_predicted_error():
    m, n, sigma = 800, 400, 0.05
    beta, scale = n / m, sigma * math.sqrt(m)
    g = torch.Generator().manual_seed(3)
    u, _ = torch.linalg.qr(torch.randn(m, 3, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, 3, generator=g, dtype=torch.float64))
    x_norm = torch.tensor([4.0, 2.0, 0.5], dtype=torch.float64)     # the last one below beta^(1/4): lost
    clean = (u * (x_norm * scale)) @ v.T
    received = clean + _noise(m, n, sigma, seed=4)
    out = denoise.svd_shrink(received, sigma, "frobenius")
    loss = float((out - clean).square().sum()) / scale ** 2
    predicted = float(denoise.predicted_spike_loss(x_norm, beta).sum())
    assert loss == pytest.approx(predicted, rel=0.1)
    # far better than taking the received matrix as it is (its error is the whole noise, m n sigma^2)
    assert float((out - clean).square().sum()) < 0.01 * m * n * sigma ** 2


def test_the_optimal_shrinker_beats_the_hard_threshold_and_both_beat_nothing():
    m, n, sigma = 300, 300, 0.1
    scale = sigma * math.sqrt(m)
    g = torch.Generator().manual_seed(5)
    u, _ = torch.linalg.qr(torch.randn(m, 5, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, 5, generator=g, dtype=torch.float64))
    clean = (u * (torch.tensor([3.0, 2.5, 2.0, 1.5, 1.2], dtype=torch.float64) * scale)) @ v.T
    received = clean + _noise(m, n, sigma, seed=6)
    err = {s: float((denoise.svd_shrink(received, sigma, s) - clean).square().sum()) for s in denoise.SHRINKERS}
    assert err["frobenius"] < err["hard"] < float((received - clean).square().sum())


def test_destripe_removes_a_row_periodic_error_and_leaves_white_noise_alone():
    m, n, sigma = 384, 128, 0.02
    g = torch.Generator().manual_seed(7)
    clean = 0.01 * torch.randn(m, n, generator=g, dtype=torch.float64)
    stripe = sigma * torch.randn(1, n, generator=g, dtype=torch.float64).expand(m, n)  # the same row everywhere
    out = denoise.denoise_tensor((clean + stripe).reshape(-1), (m, n), sigma, destripe=True).reshape(m, n)
    assert (out - clean).square().sum() < 0.01 * stripe.square().sum()
    white = clean + _noise(m, n, sigma, seed=8)
    same = denoise.denoise_tensor(white.reshape(-1), (m, n), sigma, destripe=True).reshape(m, n)
    assert torch.equal(same, white)                               # nothing detected: passed as received


def test_norm_calibration_gives_the_clean_energy_back():
    m, n, sigma = 200, 100, 0.05
    g = torch.Generator().manual_seed(9)
    clean = 0.1 * torch.randn(m, n, generator=g, dtype=torch.float64)
    received = (clean + _noise(m, n, sigma, seed=10)).reshape(-1)
    out = denoise.denoise_tensor(received, (m, n), sigma, spectral="frobenius", norm=True)
    assert float(out.square().sum()) == pytest.approx(float(clean.square().sum()), rel=0.02)
    vec = denoise.denoise_tensor(received[:100], (100,), sigma, spectral="frobenius")   # a vector: Wiener gain
    gain = denoise.wiener_gain(float(received[:100].square().sum()), 100, sigma)
    assert torch.allclose(vec, received[:100] * gain)
    assert torch.equal(denoise.denoise_tensor(received, (m, n), 0.0, spectral="hard"), received)  # no noise
