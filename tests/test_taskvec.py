"""taskvec.cosine_matrix: chunked float64 Gram against the direct formula."""
import numpy as np
import pytest
import torch

from rmtllmf_core.science.taskvec import cosine_matrix


@pytest.mark.parametrize("chunk", [1, 7, 1 << 15])
def test_cosine_matrix_matches_the_direct_float64_formula(chunk):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 1000, generator=g)
    v[1] = 0.5 * v[0] + 0.01 * v[1]          # nearly parallel rows
    v[3] = 0.0                               # a zero row gives 0, not NaN
    d = v.double()
    unit = d / d.norm(dim=1, keepdim=True).clamp_min(1e-300)
    want = (unit @ unit.T).clamp(-1, 1).numpy()
    got = cosine_matrix(v, chunk=chunk)
    assert got.dtype == np.float64 and got.shape == (5, 5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.all(got[3] == 0.0) and np.all(got[:, 3] == 0.0)
    np.testing.assert_allclose(np.diag(got)[[0, 1, 2, 4]], 1.0, atol=1e-12)


def test_cosine_matrix_wants_rows():
    with pytest.raises(ValueError):
        cosine_matrix(torch.zeros(10))
