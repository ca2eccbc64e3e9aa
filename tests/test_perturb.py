"""perturb.py against closed forms: variances, correlations, 64-QAM error rates, exact zero-noise."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rmtllmf_core.errors import InputError
from rmtllmf_core.science.perturb import (GRAY, GRAY_INVERSE, MODELS, SCALES, _gray_decode3, _gray_encode, perturb,
    q_function, qam64_ber, qam64_ser, reference_squares)
from reference import noise_std, noise_std_per_tensor
from rmtllmf_core.science.taskvec import ParamLayout
# the coded link's BER table is a Sionna simulation: tests/test_resilience.py checks it on a coarse grid
UNCODED = tuple(m for m in MODELS if m != "coded")


def make_layout(sizes=(("conv1.weight", 3000), ("transformer.resblocks.0.attn.w", 20000), ("ln_post.weight", 7000))):
    return ParamLayout.from_state({n: torch.zeros(s) for n, s in sizes})


def clean_vectors(layout, n_users=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    # tensors with very different power, so the three scales really differ
    gains = torch.tensor([0.5, 0.01, 2.0])
    return torch.randn(n_users, layout.numel, generator=g) * layout.expand_per_tensor(gains)


MSE = np.array([0.02, 0.2, 0.7])


# ----------------------------------------------------------------------------- noise_std

def test_noise_std_closed_forms():
    layout = make_layout()
    clean = clean_vectors(layout)
    absolute = noise_std(clean, MSE, layout, "absolute")
    assert absolute.shape == (3, 1)
    assert torch.allclose(absolute[:, 0], torch.tensor(np.sqrt(MSE), dtype=torch.float32))

    per_vector = noise_std(clean, MSE, layout, "per_vector")
    rms = clean.double().pow(2).mean(1).sqrt()
    assert torch.allclose(per_vector[:, 0].double(), torch.tensor(np.sqrt(MSE)) * rms, rtol=1e-6)

    per_tensor = noise_std(clean, MSE, layout, "per_tensor")
    assert per_tensor.shape == clean.shape
    for name in layout.names:
        sl = layout.slice(name)
        want = torch.tensor(np.sqrt(MSE)) * clean[:, sl].double().pow(2).mean(1).sqrt()
        got = per_tensor[:, sl]
        assert torch.allclose(got, want.float().unsqueeze(1).expand_as(got), rtol=1e-5)


# ----------------------------------------------------------------------------- gaussian statistics

@pytest.mark.parametrize("scale", SCALES)
def test_gaussian_empirical_variance_matches_mse_times_scale_squared(scale):
    layout = make_layout()
    clean = clean_vectors(layout)
    eps = (perturb(clean, MSE, layout=layout, model="gaussian", scale=scale, seed=3) - clean).double()
    for name in layout.names:
        sl = layout.slice(name)
        if scale == "absolute":
            power = torch.ones(3, dtype=torch.float64)
        elif scale == "per_vector":
            power = clean.double().pow(2).mean(1)
        elif scale == "peak":
            power = clean[:, sl].double().abs().amax(1).square()
        else:
            power = clean[:, sl].double().pow(2).mean(1)
        target = torch.tensor(MSE) * power
        n = sl.stop - sl.start
        # sample variance of n normals: relative std sqrt(2/n); allow 6 sigma
        assert torch.allclose(eps[:, sl].var(1), target, rtol=6 * math.sqrt(2 / n)), name
        assert eps[:, sl].mean(1).abs().max() < 6 * (target / n).sqrt().max()


# ----------------------------------------------------------------------------- zero noise, determinism

@pytest.mark.parametrize("model", UNCODED)
@pytest.mark.parametrize("scale", SCALES)
def test_zero_mse_returns_clean_exactly(model, scale):
    layout = make_layout()
    clean = clean_vectors(layout)
    out = perturb(clean, np.zeros(3), layout=layout, model=model, scale=scale, seed=1,
                  error_covariance=np.eye(3) * 0.0 + 0.01 * np.ones((3, 3)) + 0.01 * np.eye(3))
    assert torch.equal(out, clean)
    assert out.data_ptr() != clean.data_ptr()  # a new tensor: the caller may edit it


@pytest.mark.parametrize("model", UNCODED)
def test_zero_mse_user_untouched_among_noisy_ones(model):
    layout = make_layout()
    clean = clean_vectors(layout)
    cov = np.array([[0.1, 0.05, 0.02], [0.05, 0.2, 0.01], [0.02, 0.01, 0.3]])
    out = perturb(clean, [0.1, 0.0, 0.3], layout=layout, model=model, scale="per_tensor", seed=5, error_covariance=cov)
    assert torch.equal(out[1], clean[1])
    assert not torch.equal(out[0], clean[0]) and not torch.equal(out[2], clean[2])


@pytest.mark.parametrize("model", UNCODED)
def test_seeded_determinism(model):
    layout = make_layout()
    clean = clean_vectors(layout)
    cov = np.array([[0.1, 0.05j, 0.0], [-0.05j, 0.2, 0.0], [0.0, 0.0, 0.3]])
    kw = dict(layout=layout, model=model, scale="per_tensor", error_covariance=cov, sinr_db=[15.0, 20.0, 25.0])
    a = perturb(clean, MSE, seed=11, **kw)
    b = perturb(clean, MSE, seed=11, **kw)
    c = perturb(clean, MSE, seed=12, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == clean.shape


# ----------------------------------------------------------------------------- correlated

def test_correlated_with_diagonal_covariance_is_gaussian_bit_for_bit():
    layout = make_layout((("conv1.weight", 1001), ("ln_post.weight", 2000)))  # odd P on purpose
    clean = clean_vectors(layout)
    for scale in SCALES:
        g = perturb(clean, MSE, layout=layout, model="gaussian", scale=scale, seed=4)
        c = perturb(clean, MSE, layout=layout, model="correlated", scale=scale, seed=4,
                    error_covariance=np.diag(MSE).astype(complex))
        assert torch.equal(g, c)


def random_covariance(n, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n + 1)) + 1j * rng.normal(size=(n, n + 1))
    shared = rng.normal(size=(n, 1)) + 1j * rng.normal(size=(n, 1))
    return a @ a.conj().T * 0.05 + shared @ shared.conj().T  # a strong common component


@pytest.mark.parametrize("scale", ["absolute", "per_tensor"])
def test_correlated_empirical_correlation_matches_target(scale):
    layout = make_layout((("transformer.resblocks.0.w", 60000), ("ln_post.weight", 40000)))
    n = 4
    clean = torch.randn(n, layout.numel, generator=torch.Generator().manual_seed(1))
    cov = random_covariance(n, 7)
    mse = cov.diagonal().real * 0.1  # only the correlation is taken from cov
    out = perturb(clean, mse, layout=layout, model="correlated", scale=scale, seed=2, error_covariance=cov)
    std = noise_std(clean, mse, layout, scale).expand_as(clean)
    z = ((out - clean) / std).double()
    coh = cov / np.sqrt(np.outer(cov.diagonal().real, cov.diagonal().real))
    tol = 6 / math.sqrt(layout.numel / 2)
    # same parameter, two users: correlation Re K (both on I and on Q)
    emp = (z @ z.T / layout.numel).numpy()
    assert np.allclose(np.diag(emp), 1.0, atol=tol * math.sqrt(2))
    assert np.allclose(emp, coh.real, atol=tol)
    # I of user q against Q of user r in the same symbol: -Im K
    cross = (z[:, 0::2] @ z[:, 1::2].T / (layout.numel / 2)).numpy()
    assert np.allclose(cross, -coh.imag, atol=tol)
    # and the variance of each user is still mse * scale^2
    eps = (out - clean).double()
    assert torch.allclose(eps.pow(2).mean(1), (std.double() ** 2).mean(1), rtol=0.03)


def test_correlated_singular_covariance_is_accepted():
    layout = make_layout((("ln_post.weight", 20000),))
    clean = torch.zeros(3, layout.numel)
    h = np.array([[1.0], [1j], [-1.0]])
    cov = h @ h.conj().T  # rank one: everyone sees the same noise (up to phase)
    out = perturb(clean, [0.1, 0.1, 0.1], layout=layout, model="correlated", scale="absolute", seed=0, error_covariance=cov)
    re = out[:, 0::2].double()
    # user 1's I error is user 0's Q error rotated: e1 = j e0 => Re e1 = -Im e0
    assert torch.allclose(re[2], -re[0], atol=1e-5)
    assert torch.allclose(re[1], -out[0, 1::2].double(), atol=1e-5)


def test_correlated_bad_covariances():
    layout = make_layout()
    clean = clean_vectors(layout)
    kw = dict(layout=layout, model="correlated", scale="absolute", seed=0)
    with pytest.raises(InputError) as e:
        perturb(clean, MSE, **kw)
    assert e.value.field == "perturb.error_covariance"
    for bad in (np.eye(2), np.array([[1, 2, 0], [0, 1, 0], [0, 0, 1]]), np.array([[1, 2, 0], [2, 1, 0], [0, 0, 1]]),
                np.full((3, 3), np.nan), "nope"):
        with pytest.raises(InputError) as e:
            perturb(clean, MSE, error_covariance=bad, **kw)
        assert e.value.field == "perturb.error_covariance"


# ----------------------------------------------------------------------------- digital

def test_gray_code_neighbours_differ_by_one_bit():
    for i in range(7):
        assert bin(int(GRAY[i] ^ GRAY[i + 1])).count("1") == 1
    assert sorted(GRAY.tolist()) == list(range(8))
    assert torch.equal(GRAY[GRAY_INVERSE], torch.arange(8))
    levels = torch.arange(8)
    assert torch.equal(_gray_encode(levels), GRAY) and torch.equal(_gray_decode3(GRAY), levels)
    # the 8 x 8 constellation: symbol bits = I bits (high 3) | Q bits (low 3)
    bits = (GRAY[:, None] << 3) | GRAY[None, :]
    for i in range(8):
        for j in range(8):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < 8 and j + dj < 8:
                    assert bin(int(bits[i, j] ^ bits[i + di, j + dj])).count("1") == 1


def test_ser_formula_matches_known_values():
    # square M-QAM: SER = 1 - (1 - 2 (1 - 1/sqrt M) Q(sqrt(3 g / (M - 1))))^2
    g = 10 ** 2.0
    p = 2 * (1 - 1 / 8) * 0.5 * math.erfc(math.sqrt(3 * g / 63) / math.sqrt(2))
    assert qam64_ser(g) == pytest.approx(1 - (1 - p) ** 2, rel=1e-12)
    assert q_function(0.0) == pytest.approx(0.5)
    assert qam64_ser(np.inf) == 0.0


def word_layout(n=60000):
    return make_layout((("transformer.resblocks.0.w", n), ("ln_post.weight", n)))


def integer_words(layout, bits, n_users, seed):
    """Clean vectors whose 'bits'-bit quantisation is the identity: integers spanning [0, 2^bits - 1]."""
    g = torch.Generator().manual_seed(seed)
    top = 2**bits - 1
    w = torch.randint(0, top + 1, (n_users, layout.numel), generator=g)
    for name in layout.names:
        sl = layout.slice(name)
        w[:, sl.start], w[:, sl.start + 1] = 0, top
    return w


@pytest.mark.parametrize("sinr_db", [5.0, 12.0, 18.0, 22.0])
def test_digital_symbol_and_bit_error_rates_match_closed_form(sinr_db):
    layout = word_layout()
    bits = 12
    words = integer_words(layout, bits, 1, seed=int(sinr_db))
    out = perturb(words.float(), [0.1], layout=layout, model="digital", scale="per_tensor", seed=9,
                  sinr_db=[sinr_db], bits_per_param=bits)
    received = torch.round(out).to(torch.int64)
    assert torch.equal(out, received.float())  # only whole levels come back
    diff = words ^ received
    n_sym = bits // 6
    sym_err = sum(((diff >> (6 * k)) & 63 != 0).sum().item() for k in range(n_sym))
    bit_err = sum(((diff >> b) & 1).sum().item() for b in range(bits))
    n_symbols = layout.numel * n_sym
    sinr = 10 ** (sinr_db / 10)
    ser, ber = float(qam64_ser(sinr)), float(qam64_ber(sinr))
    assert abs(sym_err / n_symbols - ser) < 5 * math.sqrt(ser * (1 - ser) / n_symbols) + 1e-5
    n_bits = layout.numel * bits
    assert abs(bit_err / n_bits - ber) < 5 * math.sqrt(ber / n_bits) * 2 + 1e-5


@pytest.mark.parametrize("sinr_db", [8.0, 18.0])  # every axis drawn / only the events drawn
def test_digital_errors_land_on_neighbouring_points(sinr_db):
    layout = word_layout(20000)
    words = integer_words(layout, 12, 1, seed=3)
    out = perturb(words.float(), [0.1], layout=layout, model="digital", scale="absolute", seed=1,
                  sinr_db=[sinr_db], bits_per_param=12)
    received = torch.round(out).to(torch.int64)
    for shift in (0, 3, 6, 9):  # each axis of each symbol
        a = GRAY_INVERSE[(words >> shift) & 7]
        b = GRAY_INVERSE[(received >> shift) & 7]
        assert (a - b).abs().max() <= 1
        assert (a != b).any()


@pytest.mark.parametrize("bits", [6, 12, 18, 24])
def test_digital_error_free_link_only_quantises(bits):
    layout = make_layout()
    clean = clean_vectors(layout)
    out = perturb(clean, MSE, layout=layout, model="digital", scale="per_tensor", seed=0,
                  sinr_db=[np.inf] * 3, bits_per_param=bits)
    for name in layout.names:
        sl = layout.slice(name)
        x = clean[:, sl].double()
        half_step = (x.max(1).values - x.min(1).values) / (2**bits - 1) / 2
        err = (out[:, sl].double() - x).abs().max(1).values
        assert torch.all(err <= half_step * (1 + 1e-6) + 1e-7)


def test_digital_default_sinr_is_the_receivers():
    layout = word_layout(5000)
    clean = integer_words(layout, 12, 2, seed=0).float()
    mse = np.array([0.05, 0.01])
    a = perturb(clean, mse, layout=layout, model="digital", scale="absolute", seed=3)
    b = perturb(clean, mse, layout=layout, model="digital", scale="absolute", seed=3, sinr_db=10 * np.log10(1 / mse - 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, clean)


def test_digital_constant_tensor_survives():
    layout = make_layout((("conv1.weight", 10), ("ln_post.weight", 10)))
    clean = torch.cat([torch.full((1, 10), 0.25), torch.linspace(-1, 1, 10)[None]], 1)
    out = perturb(clean, [0.01], layout=layout, model="digital", scale="absolute", seed=0, sinr_db=[np.inf])
    assert torch.equal(out[0, :10], clean[0, :10])


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "change, field",
    [
        ({"model": "bogus"}, "perturb.model"),
        ({"scale": "per_layer"}, "perturb.scale"),
        ({"bits_per_param": 7, "model": "digital"}, "perturb.bits_per_param"),
        ({"mse": [0.1, -0.1, 0.2]}, "perturb.mse"),
        ({"mse": [0.1, 0.2]}, "perturb.mse"),
        ({"mse": [0.1, float("nan"), 0.2]}, "perturb.mse"),
        ({"clean": torch.zeros(3, 5)}, "perturb.clean"),
        ({"clean": torch.full((3, 30000), float("inf"))}, "perturb.clean"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"sinr_db": [1.0, 2.0], "model": "digital"}, "perturb.sinr_db"),
        ({"layout": "not a layout"}, "perturb.layout"),
    ],
)
def test_bad_inputs_name_the_field(change, field):
    layout = make_layout()
    kw = dict(clean=clean_vectors(layout), mse=MSE, layout=layout, model="gaussian", scale="absolute", seed=0)
    kw.update(change)
    clean, mse = kw.pop("clean"), kw.pop("mse")
    with pytest.raises(InputError) as e:
        perturb(clean, mse, **kw)
    assert e.value.field == field


def test_noise_std_bad_scale():
    layout = make_layout()
    with pytest.raises(InputError) as e:
        noise_std(clean_vectors(layout), MSE, layout, "relative")
    assert e.value.field == "perturb.scale"


# ----------------------------------------------------------------------------- properties

@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    n_users=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    model=st.sampled_from(UNCODED),
    scale=st.sampled_from(SCALES),
)
def test_property_shapes_zero_noise_and_finite(sizes, n_users, seed, model, scale):
    layout = make_layout(tuple((f"transformer.resblocks.{i}.w", s) for i, s in enumerate(sizes)))
    clean = torch.randn(n_users, layout.numel, generator=torch.Generator().manual_seed(seed))
    cov = np.eye(n_users) * 0.5 + 0.5
    zero = perturb(clean, np.zeros(n_users), layout=layout, model=model, scale=scale, seed=seed, error_covariance=cov)
    assert torch.equal(zero, clean)
    noisy = perturb(clean, np.full(n_users, 0.3), layout=layout, model=model, scale=scale, seed=seed,
                    error_covariance=cov, bits_per_param=6)
    assert noisy.shape == clean.shape and noisy.dtype == torch.float32 and torch.isfinite(noisy).all()


def test_per_tensor_mean_square_matches_its_definition():
    layout = make_layout((("conv1.weight", 300), ("ln_pre.weight", 0), ("ln_post.weight", 77)))
    x = torch.randn(3, layout.numel, generator=torch.Generator().manual_seed(0))
    got = layout.per_tensor_mean_square(x)
    assert got.dtype == torch.float64 and got.shape == (3, 3)
    assert torch.allclose(got[:, 0], x[:, :300].double().square().mean(1))
    assert torch.allclose(got[:, 2], x[:, 300:].double().square().mean(1))
    assert torch.all(got[:, 1] == 0)  # an empty tensor has no power (not 0/0)


def test_digital_dead_link_is_accepted():
    layout = word_layout(2000)
    words = integer_words(layout, 12, 1, seed=0).float()
    out = perturb(words, [1.0], layout=layout, model="digital", scale="absolute", seed=0, sinr_db=[-np.inf])
    assert torch.isfinite(out).all() and not torch.equal(out, words)


def mmse_sic_error_covariance(h, p, cz):
    """E[e e^H] of an MMSE-SIC receiver (decoding order 0, 1, ...; perfect cancellation), from first principles."""
    n, q_users = h.shape
    lz = np.linalg.cholesky(cz)
    rows = []
    for q in range(q_users):
        x = cz + sum(p[r] * np.outer(h[:, r], h[:, r].conj()) for r in range(q + 1, q_users))
        xi_h = np.linalg.solve(x, h[:, q])
        w = np.sqrt(p[q]) * xi_h / (1 + p[q] * (h[:, q].conj() @ xi_h).real)
        on_symbols = np.zeros(q_users, complex)
        on_symbols[q:] = np.sqrt(p[q:]) * (w.conj() @ h[:, q:])
        on_symbols[q] -= 1.0
        rows.append(np.concatenate([on_symbols, w.conj() @ lz]))  # e_q as a map of (s, whitened z)
    e = np.array(rows)
    return e @ e.conj().T


def test_mmse_sic_errors_are_uncorrelated_so_correlated_reduces_to_gaussian():
    # Why `correlated` with the SIC receiver's covariance is `gaussian`: with perfect cancellation,
    # user r's MMSE error is orthogonal to everything user q (decoded earlier) still sees, so
    # E[e_q e_r^*] = 0. The correlated model only differs for receivers without SIC.
    rng = np.random.default_rng(0)
    h = (rng.normal(size=(4, 3)) + 1j * rng.normal(size=(4, 3))) / np.sqrt(2)
    jam = rng.normal(size=(4, 2)) + 1j * rng.normal(size=(4, 2))
    cov = mmse_sic_error_covariance(h, np.ones(3), 0.1 * np.eye(4) + jam @ jam.conj().T)
    assert np.abs(cov - np.diag(cov.diagonal())).max() < 1e-12 * np.abs(cov).max()
    layout = make_layout()
    clean = clean_vectors(layout)
    mse = cov.diagonal().real
    cleaned = np.diag(cov.diagonal())  # exact zeros off the diagonal, as the algebra says
    assert torch.equal(perturb(clean, mse, layout=layout, model="correlated", scale="absolute", seed=1, error_covariance=cleaned),
                       perturb(clean, mse, layout=layout, model="gaussian", scale="absolute", seed=1))


# ----------------------------------------------------------------------------- slice-wise stages

from rmtllmf_core.science.perturb import Spec, link, perturb_slice_, stream_seed  # noqa: E402

COV3 = np.array([[0.1, 0.05j, 0.02], [-0.05j, 0.2, 0.01], [0.02, 0.01, 0.3]])


def sliced(clean, mse, layout, rows, model, scale, seed, order=None):
    """Perturb only `rows` (user indices) tensor by tensor, visiting tensors in `order`."""
    x = clean[list(rows)].clone()
    lk = link(mse, Spec(model, scale), layout=layout, seed=seed, users=rows,
              power=reference_squares(x, layout, scale), error_covariance=COV3, sinr_db=[12.0, 15.0, 9.0])
    for i in (order if order is not None else range(len(layout.names))):
        a, b = layout.offsets[i], layout.offsets[i + 1]
        piece = x[:, a:b].clone()  # a fresh scratch slice, as a streaming caller hands it
        perturb_slice_(piece, lk, i)
        x[:, a:b] = piece
    return x


@pytest.mark.parametrize("model", UNCODED)
@pytest.mark.parametrize("scale", SCALES)
def test_slice_wise_equals_whole_stack_and_ignores_order_and_subset(model, scale):
    layout = make_layout()
    clean = clean_vectors(layout)
    whole = perturb(clean, MSE, layout=layout, model=model, scale=scale, seed=7, error_covariance=COV3,
                    sinr_db=[12.0, 15.0, 9.0])
    # all users, tensors visited backwards: the same numbers
    assert torch.equal(sliced(clean, MSE, layout, (0, 1, 2), model, scale, 7, order=[2, 1, 0]), whole)
    # a subset of users (as the pipeline fuses): each user's received vector does not change
    sub = sliced(clean, MSE, layout, (2, 0), model, scale, 7)
    assert torch.equal(sub, whole[[2, 0]])


def test_stream_seeds_differ_per_user_and_tensor():
    seeds = {stream_seed(5, q, i) for q in range(8) for i in range(200)}
    assert len(seeds) == 1600 and all(0 <= s < 2**63 for s in seeds)
    assert stream_seed(5, 1, 2) != stream_seed(5, 2, 1) != stream_seed(6, 1, 2)


@pytest.mark.parametrize("scale", SCALES)
def test_per_tensor_std_is_the_expanded_std(scale):
    layout = make_layout()
    clean = clean_vectors(layout)
    per_tensor = noise_std_per_tensor(clean, MSE, layout, scale)
    assert per_tensor.shape == (3, len(layout.names))
    expanded = layout.expand_per_tensor(per_tensor)
    assert torch.allclose(noise_std(clean, MSE, layout, scale).expand_as(clean), expanded, rtol=1e-6)


def test_per_tensor_noise_power_matches_each_tensors_std():
    # per (user, tensor): the empirical error variance is std^2, and the error mean is ~0
    layout = make_layout((("conv1.weight", 40000), ("transformer.resblocks.0.w", 60000), ("ln_post.weight", 50000)))
    clean = torch.randn(3, layout.numel, generator=torch.Generator().manual_seed(2)) * layout.expand_per_tensor(
        torch.tensor([0.5, 0.01, 2.0]))
    std = noise_std_per_tensor(clean, MSE, layout, "per_tensor").double()
    eps = (perturb(clean, MSE, layout=layout, model="gaussian", scale="per_tensor", seed=1) - clean).double()
    for i, name in enumerate(layout.names):
        sl = layout.slice(name)
        n = sl.stop - sl.start
        assert torch.allclose(eps[:, sl].var(1), std[:, i] ** 2, rtol=6 * math.sqrt(2 / n)), name


def test_link_without_noise_leaves_slices_untouched_and_checks_rows():
    layout = make_layout()
    clean = clean_vectors(layout)
    lk = link(np.zeros(3), Spec("gaussian", "absolute"), layout=layout, seed=0)
    x = clean.clone()
    perturb_slice_(x[:, :3000], lk, 0)
    assert torch.equal(x, clean)
    lk = link(MSE, Spec("gaussian", "absolute"), layout=layout, seed=0, users=[1])
    with pytest.raises(InputError) as e:
        perturb_slice_(x[:, :3000], lk, 0)
    assert e.value.field == "perturb.slice"
    with pytest.raises(InputError) as e:
        link(MSE, Spec("gaussian", "per_tensor"), layout=layout, seed=0)
    assert e.value.field == "perturb.power"
    with pytest.raises(InputError) as e:
        link(MSE, Spec("gaussian", "absolute"), layout=layout, seed=0, users=[3])
    assert e.value.field == "perturb.users"


# ----------------------------------------------------------------------------- reference amplitude, peak

def test_peak_scale_is_each_tensors_largest_magnitude():
    layout = make_layout()
    clean = clean_vectors(layout)
    peak = noise_std(clean, MSE, layout, "peak")
    assert peak.shape == clean.shape
    for name in layout.names:
        sl = layout.slice(name)
        want = torch.tensor(np.sqrt(MSE)) * clean[:, sl].double().abs().amax(1)
        assert torch.allclose(peak[:, sl], want.float().unsqueeze(1).expand_as(peak[:, sl]), rtol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
def test_symbol_gain_divides_the_std_by_its_amplitude_exactly(scale):
    layout = make_layout()
    clean = clean_vectors(layout)
    ref = noise_std(clean, MSE, layout, scale)
    for gain_db in (-20.0, 7.5, 30.0):
        got = noise_std(clean, MSE, layout, scale, gain_db=gain_db)
        assert torch.allclose(got.double(), ref.double() * 10 ** (-gain_db / 20), rtol=1e-6)


@pytest.mark.parametrize("scale", ["absolute", "peak"])
def test_symbol_gain_scales_the_drawn_error_variance(scale):
    """A large draw: the sample variance of the error per tensor equals MSE * scale^2 * 10^(-g/10)
    within its sampling error (chi-square with n degrees of freedom: relative sd sqrt(2 / n))."""
    layout = make_layout()
    clean = clean_vectors(layout)
    gain_db = 17.0
    got = perturb(clean, MSE, layout=layout, model="gaussian", scale=scale, seed=5, gain_db=gain_db) - clean
    for name in layout.names:
        sl = layout.slice(name)
        ref = 1.0 if scale == "absolute" else clean[:, sl].double().abs().amax(1)
        want = torch.tensor(MSE) * ref ** 2 * 10 ** (-gain_db / 10)
        n = sl.stop - sl.start
        var = got[:, sl].double().pow(2).mean(1)
        assert torch.all((var / want - 1).abs() < 5 * math.sqrt(2 / n)), (name, var / want)


@pytest.mark.parametrize("bad", [60.5, -41, float("nan"), float("inf"), "10", True])
def test_symbol_gain_out_of_range_names_its_field(bad):
    layout = make_layout()
    with pytest.raises(InputError, match=r"perturb\.symbol_gain_db"):
        noise_std(clean_vectors(layout), MSE, layout, "absolute", gain_db=bad)
