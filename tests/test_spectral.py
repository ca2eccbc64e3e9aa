"""The singular-value merges and MSE-aware fusion against direct computations (rmtllmf_core/science/spectral.py,
fusion.mse_aware_weights), and on the streaming path (fusion.merge)."""
from __future__ import annotations

import pytest
import torch

from rmtllmf_core.science import fusion, spectral
from rmtllmf_core.errors import InputError
from rmtllmf_core.science.fusion import merge
from rmtllmf_core.science.methods import METHODS
from rmtllmf_core.science.taskvec import ParamLayout


def orthonormal(n: int, k: int, gen) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, k, dtype=torch.float64, generator=gen))
    return q


def test_tsv_m_of_mutually_orthogonal_low_rank_tasks_is_their_sum():
    gen = torch.Generator().manual_seed(0)
    t, m, n, k = 4, 12, 10, 2            # r = 10, budget r // T = 2 per task
    u, v = orthonormal(m, t * k, gen), orthonormal(n, t * k, gen)
    tasks = torch.stack([u[:, i * k:(i + 1) * k] @ torch.diag(torch.rand(k, dtype=torch.float64, generator=gen) + 0.5)
                         @ v[:, i * k:(i + 1) * k].T for i in range(t)])
    assert torch.allclose(spectral.tsv_m(tasks), tasks.sum(0), atol=1e-10)
    # rank 1 each (below the budget) as well: zero singular values do not disturb the others
    ones = torch.stack([u[:, i:i + 1] @ v[:, i:i + 1].T * (i + 1) for i in range(t)])
    assert torch.allclose(spectral.tsv_m(ones), ones.sum(0), atol=1e-10)


def test_tsv_m_truncates_each_task_to_its_budget_and_decorrelates():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9, 7, dtype=torch.float64, generator=gen)
    out = spectral.tsv_m(x)
    s = torch.linalg.svdvals(out)
    assert int((s > 1e-9 * s[0]).sum()) <= 3 * (7 // 3)      # rank at most T k
    # the kept singular values survive, since the stacked vectors are made orthonormal
    kept = torch.cat([torch.linalg.svdvals(xt)[:2] for xt in x]).sort(descending=True).values
    assert torch.allclose(s[:6], kept, atol=1e-10)


def test_iso_c_spectrum_is_flat_at_the_mean_of_the_sums():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 8, 6, dtype=torch.float64, generator=gen)
    out = spectral.iso_c(x)
    s_sum = torch.linalg.svdvals(x.sum(0))
    assert torch.allclose(torch.linalg.svdvals(out), torch.full((6,), float(s_sum.mean()), dtype=torch.float64))
    u, _, vh = torch.linalg.svd(x.sum(0), full_matrices=False)
    assert torch.allclose(out, s_sum.mean() * u @ vh)          # same singular vectors as the sum


def test_iso_cts_sizes_and_flat_spectrum():
    assert spectral.iso_cts_sizes(768, 8) == (616, 19)        # the paper's ViT-B/32 sizes
    assert spectral.iso_cts_sizes(8, 8) == (8, 0)              # too small for task-specific parts
    for r, t in ((768, 8), (64, 8), (10, 3), (5, 8)):
        kc, s = spectral.iso_cts_sizes(r, t)
        assert kc + t * s == r and kc >= 0 and s >= 0
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 20, 15, dtype=torch.float64, generator=gen)
    s = torch.linalg.svdvals(spectral.iso_cts(x))
    assert torch.allclose(s, s[0].expand_as(s), rtol=1e-8)     # flat
    # with no room for task-specific directions it is Iso-C
    small = torch.randn(8, 6, 5, dtype=torch.float64, generator=gen)
    assert torch.allclose(spectral.iso_cts(small), spectral.iso_c(small), atol=1e-10)


@pytest.mark.parametrize("fn", [spectral.tsv_m, spectral.iso_c, spectral.iso_cts])
def test_singular_value_merges_are_homogeneous(fn):
    """lambda scales them like task arithmetic: f(c X) = c f(X)."""
    x = torch.randn(4, 10, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(fn(2.5 * x), 2.5 * fn(x), atol=1e-10)


def layout_of(shapes):
    state = {f"p{i}": torch.zeros(s) for i, s in enumerate(shapes)}
    return ParamLayout.from_state(state)


@pytest.mark.parametrize("method,fn", [("tsv_m", spectral.tsv_m), ("iso_c", spectral.iso_c),
                                       ("iso_cts", spectral.iso_cts)])
def test_streaming_merge_applies_them_per_matrix_and_the_mean_elsewhere(method, fn):
    layout = layout_of([(6, 5), (7,), (1, 9), (4, 3)])     # a matrix, a bias, a row, a matrix
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(3, layout.numel, generator=gen)
    out = merge(v, method=method, layout=layout, lambda_=0.7)
    parts = [v[:, a:b] for a, b in zip(layout.offsets, layout.offsets[1:])]
    want = torch.cat([0.7 * fn(parts[0].reshape(3, 6, 5).double()).reshape(-1).float(), 0.7 * parts[1].mean(0),
                      0.7 * parts[2].mean(0), 0.7 * fn(parts[3].reshape(3, 4, 3).double()).reshape(-1).float()])
    assert torch.allclose(out, want, atol=1e-5)


def test_mse_aware_weights_closed_form():
    p = torch.tensor([2.0, 1.0, 4.0, 0.5])          # received mean squares
    v = torch.tensor([1.0, 0.0, 1.0, 1.0])          # noise variances (user 2: a clean link)
    gain = torch.tensor([0.5, 1.0, 0.75, 0.0])      # snr / (1 + snr) = (p - v) / p, 0 below the noise
    w = fusion.mse_aware_weights(p, v)
    assert torch.allclose(w, gain * 4 / gain.sum())
    assert torch.allclose(fusion.mse_aware_weights(p, torch.zeros(4)), torch.ones(4))   # no noise: no change
    assert torch.allclose(fusion.mse_aware_weights([1.0, 1.0], [2.0, 3.0]), torch.ones(2))  # all noise: alike
    with pytest.raises(InputError, match="fusion.mse_aware"):
        fusion.mse_aware_weights([1.0, float("nan")], [0.1, 0.1])


def test_user_weights_scale_each_vector_before_the_merge():
    layout = layout_of([(4, 3), (5,)])
    v = torch.randn(3, layout.numel, generator=torch.Generator().manual_seed(6))
    w = torch.tensor([0.5, 1.0, 1.5])
    for method in ("task_arithmetic", "ties", "iso_c"):
        got = merge(v, method=method, layout=layout, lambda_=0.4, user_weights=w)
        assert torch.allclose(got, merge(v * w[:, None], method=method, layout=layout, lambda_=0.4), atol=1e-6)
    with pytest.raises(InputError, match="fusion.mse_aware"):
        merge(v, method="task_arithmetic", layout=layout, lambda_=0.4, user_weights=[1.0, 2.0])


def test_method_records_are_complete():
    for name, m in METHODS.items():
        assert name in fusion.RECIPES and m.title and m.reference
        assert all(0.0 < lam <= 3.0 for lam in m.lambda_grid) and (m.lambda_grid or name == "average")
    with pytest.raises(InputError, match="fusion.recipe.spectral"):
        fusion.Recipe(sparsify="magnitude", spectral="iso")
