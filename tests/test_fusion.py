"""fusion.py: each method against a hand-computed 3 x 6 case, and the identities between methods."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from rmtllmf_core.errors import InputError
from rmtllmf_core.science.fusion import (LAMBDA_GRID, LAYER_WEIGHT_MAX, METHODS, Recipe, consensus_mask,
    heuristic_lambda, layer_ids, merge, merge_recipe)
from reference import elect_signs, kth_largest, layer_weights, magnitude_mask
from rmtllmf_core.science.perturb import stream_seed
from rmtllmf_core.science.taskvec import ParamLayout

# Two transformer blocks of three entries each: layer-aware sees two layers.
LAYOUT = ParamLayout.from_state({"transformer.resblocks.0.w": torch.zeros(3), "transformer.resblocks.1.w": torch.zeros(3)})

# The hand-computed case (no magnitude ties inside any row, so the TIES trim is unambiguous).
V = torch.tensor([
    [1.0, -2.0, 0.5, 3.0, 0.0, -1.5],
    [2.0, 1.0, -0.5, 1.0, -4.0, -2.0],
    [-1.25, 0.5, 1.0, 2.0, 0.75, 0.25],
])


def run(method, vectors=V, layout=LAYOUT, **kw):
    kw.setdefault("lambda_", 0.5)
    return merge(vectors, layout=layout, method=method, **kw)


def close(got, want, tol=1e-6):
    return torch.allclose(got, torch.as_tensor(want, dtype=torch.float32), atol=tol, rtol=tol)


# ----------------------------------------------------------------------------- hand-computed cases

def test_task_arithmetic_by_hand():
    # column sums: 1.75, -0.5, 1.0, 6.0, -3.25, -3.25; times lambda = 0.5
    assert close(run("task_arithmetic"), [0.875, -0.25, 0.5, 3.0, -1.625, -1.625])


def test_average_by_hand():
    assert close(run("average"), [1.75 / 3, -0.5 / 3, 1.0 / 3, 2.0, -3.25 / 3, -3.25 / 3])


def test_ties_by_hand():
    # trim to 3 of 6 per row:  t1 -> [0, -2, 0, 3, 0, -1.5]; t2 -> [2, 0, 0, 0, -4, -2]; t3 -> [-1.25, 0, 1, 2, 0, 0]
    # elected signs (column sums 0.75, -2, 1, 5, -4, -3.5): +, -, +, +, -, -
    # disjoint sum of agreeing entries: 2 (t3's -1.25 disagrees), -2, 1, 5, -4, -3.5; times 0.5
    assert close(run("ties", density=0.5), [1.0, -1.0, 0.5, 2.5, -2.0, -1.75])


def test_consensus_by_hand():
    # TALL masks at 0.4 (|t| >= 0.4 |sum - t|):
    #   t1: 1 1 1 1 0 1;  t2: 1 1 0 0 1 1;  t3: 1 1 1 1 0 0;  claims per entry: 3 3 2 2 1 2
    ta = [0.875, -0.25, 0.5, 3.0, -1.625, -1.625]
    assert close(run("consensus", consensus_min_tasks=2, tall_mask_lambda=0.4), [0.875, -0.25, 0.5, 3.0, 0.0, -1.625])
    assert close(run("consensus", consensus_min_tasks=3, tall_mask_lambda=0.4), [0.875, -0.25, 0, 0, 0, 0])
    assert close(run("consensus", consensus_min_tasks=1, tall_mask_lambda=0.4), ta)  # every entry claimed once
    assert torch.equal(consensus_mask(V, 0.4, 2), torch.tensor([True, True, True, True, False, True]))


def test_dare_by_hand():
    # drop 0.5 with this seed keeps exactly the entries where the seeded uniforms are >= 0.5 (one
    # generator per tensor, seeded by (seed, tensor index)); survivors are doubled, summed, scaled by lambda
    u = torch.cat([torch.rand(3, 3, generator=torch.Generator().manual_seed(stream_seed(7, i))) for i in range(2)], 1)
    kept = (u >= 0.5).float()
    want = (V * kept * 2.0).sum(0) * 0.5
    assert close(run("dare", drop_rate=0.5, seed=7), want)
    assert 0 < kept.sum() < kept.numel()  # the case really drops something


def test_layer_aware_by_hand():
    # block 0: both tasks are (1, 0, 0): fully shared (cos 1) -> weight 0
    # block 1: (0, 2, 0) vs (0, 0, 3): task-specific (cos 0) -> kept, scaled so each vector keeps its norm:
    #   task 1: sqrt((1 + 4) / 4) = sqrt(5)/2, task 2: sqrt((1 + 9) / 9) = sqrt(10)/3
    v = torch.tensor([[1.0, 0, 0, 0, 2, 0], [1.0, 0, 0, 0, 0, 3]])
    w = layer_weights(v, LAYOUT)
    assert torch.allclose(w, torch.tensor([[0.0, math.sqrt(5) / 2], [0.0, math.sqrt(10) / 3]], dtype=torch.float64))
    assert close(run("layer_aware", vectors=v, lambda_=1.0), [0, 0, 0, 0, math.sqrt(5), math.sqrt(10)], tol=1e-5)


def test_layer_aware_matches_its_formula_on_the_3x6_case():
    x = V.double().numpy()
    layers = [slice(0, 3), slice(3, 6)]
    want = np.zeros((3, 2))
    for t in range(3):
        r, energy = [], []
        for sl in layers:
            own, rest = x[t, sl], x[:, sl].sum(0) - x[t, sl]
            c = own @ rest / (np.linalg.norm(own) * np.linalg.norm(rest))
            r.append(1 - max(c, 0.0))
            energy.append(own @ own)
        r, energy = np.array(r), np.array(energy)
        want[t] = np.minimum(r * math.sqrt(energy.sum() / (r**2 * energy).sum()), LAYER_WEIGHT_MAX)
    got = layer_weights(V, LAYOUT).numpy()
    assert np.allclose(got, want, atol=1e-6)
    merged = run("layer_aware", lambda_=0.5).double().numpy()
    expect = 0.5 * sum(np.concatenate([want[t, 0] * x[t, :3], want[t, 1] * x[t, 3:]]) for t in range(3))
    assert np.allclose(merged, expect, atol=1e-5)


def test_layer_aware_weights_are_capped():
    # block 1 carries almost no energy but is orthogonal: norm preservation would ask for ~10x
    v = torch.tensor([[1.0, 0, 0, 0, 0.1, 0], [1.0, 0, 0, 0, 0, 0.1]])
    assert torch.allclose(layer_weights(v, LAYOUT)[:, 1], torch.full((2,), LAYER_WEIGHT_MAX, dtype=torch.float64))


def test_layer_aware_is_task_arithmetic_for_one_task_or_orthogonal_tasks():
    one = V[:1]
    assert torch.allclose(run("layer_aware", vectors=one), run("task_arithmetic", vectors=one))
    ortho = torch.tensor([[1.0, 0, 0, 2, 0, 0], [0, 3.0, 0, 0, 1, 0], [0, 0, -1.0, 0, 0, 4]])
    assert torch.allclose(layer_weights(ortho, LAYOUT), torch.ones(3, 2, dtype=torch.float64))
    assert torch.allclose(run("layer_aware", vectors=ortho), run("task_arithmetic", vectors=ortho))


def test_layer_ids_follow_the_vit_structure():
    layout = ParamLayout.from_state({
        "class_embedding": torch.zeros(2), "positional_embedding": torch.zeros(2), "proj": torch.zeros(2),
        "conv1.weight": torch.zeros(2), "ln_pre.weight": torch.zeros(1),
        "transformer.resblocks.0.w": torch.zeros(1), "transformer.resblocks.1.w": torch.zeros(1),
        "ln_post.weight": torch.zeros(1),
    })
    ids, n = layer_ids(layout)
    # stem (embeddings, ln_pre) = 0, blocks 1..2, head (proj, ln_post) = 3
    assert n == 4
    assert ids.tolist() == [0, 0, 0, 0, 3, 3, 0, 0, 0, 1, 2, 3]


# ----------------------------------------------------------------------------- identities

def random_vectors(t=4, p=300, seed=0):
    return torch.randn(t, p, generator=torch.Generator().manual_seed(seed))


BIG = ParamLayout.from_state({"conv1.weight": torch.zeros(100), "transformer.resblocks.0.w": torch.zeros(150),
                              "ln_post.weight": torch.zeros(50)})


def test_task_arithmetic_is_linear():
    x, y = random_vectors(seed=1), random_vectors(seed=2)
    f = lambda v, lam=0.3: run("task_arithmetic", vectors=v, layout=BIG, lambda_=lam)
    assert torch.allclose(f(x + y), f(x) + f(y), atol=1e-5)
    assert torch.allclose(f(2.5 * x), 2.5 * f(x), atol=1e-5)
    assert torch.allclose(f(x, 0.6), 2 * f(x, 0.3), atol=1e-5)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "average"])
def test_every_method_is_linear_in_lambda_and_zero_at_zero(method):
    x = random_vectors(seed=3)
    one = run(method, vectors=x, layout=BIG, lambda_=1.0, seed=5)
    assert torch.allclose(run(method, vectors=x, layout=BIG, lambda_=0.35, seed=5), 0.35 * one, atol=1e-6)
    zero = run(method, vectors=x, layout=BIG, lambda_=0.0, seed=5)
    assert torch.equal(zero, torch.zeros(BIG.numel))


def test_average_is_task_arithmetic_at_one_over_t():
    x = random_vectors(seed=4)
    assert torch.allclose(run("average", vectors=x, layout=BIG, lambda_=0.9),
                          run("task_arithmetic", vectors=x, layout=BIG, lambda_=1 / 4), atol=1e-6)


def test_ties_with_full_density_and_no_sign_conflict_is_task_arithmetic():
    x = random_vectors(seed=5).abs() * torch.sign(torch.randn(BIG.numel, generator=torch.Generator().manual_seed(6)))
    assert torch.allclose(run("ties", vectors=x, layout=BIG, density=1.0), run("task_arithmetic", vectors=x, layout=BIG))


def test_ties_keeps_density_fraction_and_elected_signs():
    x = random_vectors(t=3, p=300, seed=7)
    out = run("ties", vectors=x, layout=BIG, density=0.2, lambda_=1.0)
    trimmed_support = torch.zeros(300, dtype=torch.bool)
    for row in x:
        top = row.abs().topk(60).indices
        assert (row.abs() > 0).sum() >= 60
        trimmed_support[top] = True
    assert torch.all(out[~trimmed_support] == 0)
    # no entry of the merged vector has a sign that its trimmed contributions disagree on as a whole
    trimmed = torch.stack([torch.where(torch.isin(torch.arange(300), r.abs().topk(60).indices), r, 0 * r) for r in x])
    assert torch.all(out * trimmed.sum(0) >= 0)


@pytest.mark.parametrize("density", [0.01, 0.2, 0.5, 0.51, 0.8, 0.999])
def test_magnitude_mask_keeps_exactly_the_top_k(density):
    x = random_vectors(t=3, p=300, seed=12)  # continuous values: no ties
    k = int(math.floor(density * 300 + 0.5))
    mask = magnitude_mask(x, density)
    for row, m in zip(x, mask):
        assert m.sum() == k
        assert torch.equal(m.nonzero().flatten().sort().values, row.abs().argsort(descending=True)[:k].sort().values)


def test_kth_largest_is_exact_against_sorting():
    g = torch.Generator().manual_seed(13)
    x = torch.randn(3, 5000, generator=g).abs()
    x[1, ::3] = 0.0  # many exact zeros
    x[2] = x[2].round(decimals=1)  # many exact ties
    for k in (1, 2, 1666, 2500, 3333, 4999, 5000):
        want = x.sort(dim=1, descending=True).values[:, k - 1 : k]
        assert torch.equal(kth_largest(x, k), want), k


def test_ties_two_pass_disjoint_sum_equals_masking_by_elected_signs():
    x = random_vectors(t=5, p=300, seed=14)
    x[:, :10] = 0.0  # columns with no mass elect no sign
    x[0, 10], x[1, 10] = 1.0, -1.0  # an exact tie between signs
    x[2:, 10] = 0.0
    want = (x * elect_signs(x)).sum(0)
    got = merge_recipe(x, Recipe(sign="ties"), layout=BIG, lambda_=1.0)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.all(got[:11] == 0)


def test_dare_expectation_is_task_arithmetic_and_seeded():
    x = random_vectors(t=3, p=200, seed=8)
    p, lam, n = 0.7, 0.4, 400
    runs = torch.stack([run("dare", vectors=x, layout=LAYOUT_200, drop_rate=p, lambda_=lam, seed=s) for s in range(n)])
    ta = run("task_arithmetic", vectors=x, layout=LAYOUT_200, lambda_=lam)
    sd = lam * (x.pow(2).sum(0) * p / (1 - p)).sqrt() / math.sqrt(n)
    assert torch.all((runs.mean(0) - ta).abs() <= 5 * sd + 1e-6)
    assert torch.equal(runs[0], run("dare", vectors=x, layout=LAYOUT_200, drop_rate=p, lambda_=lam, seed=0))
    assert not torch.equal(runs[0], runs[1])
    assert torch.equal(run("dare", vectors=x, layout=LAYOUT_200, drop_rate=0.0, lambda_=lam), ta)


LAYOUT_200 = ParamLayout.from_state({"transformer.resblocks.0.w": torch.zeros(200)})


def test_consensus_keeps_only_entries_claimed_by_k_tasks():
    x = random_vectors(t=5, p=300, seed=9)
    ta = run("task_arithmetic", vectors=x, layout=BIG)
    total = x.sum(0)
    claims = (x.abs() >= 0.4 * (total - x).abs()).sum(0)
    for k in (1, 2, 3, 5):
        out = run("consensus", vectors=x, layout=BIG, consensus_min_tasks=k)
        assert torch.equal(out, torch.where(claims >= k, ta, torch.zeros_like(ta)))
    # k beyond the number of tasks is capped at T (entries every task claims survive)
    assert torch.equal(run("consensus", vectors=x, layout=BIG, consensus_min_tasks=9),
                       run("consensus", vectors=x, layout=BIG, consensus_min_tasks=5))


def test_merge_does_not_touch_its_input_and_returns_float32():
    x = random_vectors(seed=10)
    before = x.clone()
    for method in METHODS:
        out = run(method, vectors=x, layout=BIG)
        assert out.shape == (BIG.numel,) and out.dtype == torch.float32
    assert torch.equal(x, before)


def test_recipe_combinations_compose():
    x = random_vectors(seed=11)
    dare_ties = merge_recipe(x, Recipe(sparsify="random", sign="ties"), layout=BIG, lambda_=0.5, drop_rate=0.5, seed=1)
    assert dare_ties.shape == (BIG.numel,)
    with pytest.raises(InputError) as e:
        Recipe(sparsify="bogus")
    assert e.value.field == "fusion.recipe.sparsify"


# ----------------------------------------------------------------------------- lambda

def test_heuristic_lambda():
    assert heuristic_lambda(1) == 1.0
    assert heuristic_lambda(8) == pytest.approx(0.3536, abs=1e-4)
    assert 0.3 <= heuristic_lambda(8) <= 0.4
    values = [heuristic_lambda(n) for n in range(1, 65)]
    assert all(0 < v <= 1 for v in values) and values == sorted(values, reverse=True)
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(InputError) as e:
            heuristic_lambda(bad)
        assert e.value.field == "tasks"


def test_lambda_grid():
    assert list(LAMBDA_GRID) == sorted(LAMBDA_GRID) and all(0 < v <= 1 for v in LAMBDA_GRID)
    assert any(abs(v - heuristic_lambda(8)) < 0.06 for v in LAMBDA_GRID)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "change, field",
    [
        ({"method": "fisher"}, "fusion.method"),
        ({"lambda_": -0.1}, "fusion.lambda"),
        ({"lambda_": 3.5}, "fusion.lambda"),
        ({"lambda_": float("nan")}, "fusion.lambda"),
        ({"density": 0.0}, "fusion.density"),
        ({"density": 1.2}, "fusion.density"),
        ({"drop_rate": 1.0}, "fusion.drop_rate"),
        ({"consensus_min_tasks": 0}, "fusion.consensus_min_tasks"),
        ({"tall_mask_lambda": 0.0}, "fusion.tall_mask_lambda"),
        ({"seed": -3}, "seed"),
        ({"vectors": torch.zeros(3, 5)}, "fusion.vectors"),
        ({"vectors": torch.zeros(6)}, "fusion.vectors"),
        ({"vectors": torch.full((3, 6), float("nan"))}, "fusion.vectors"),
        ({"layout": None}, "fusion.layout"),
    ],
)
def test_bad_inputs_name_the_field(change, field):
    kw = dict(vectors=V, layout=LAYOUT, method="task_arithmetic", lambda_=0.3)
    kw.update(change)
    with pytest.raises(InputError) as e:
        merge(kw.pop("vectors"), **kw)
    assert e.value.field == field


# ----------------------------------------------------------------------------- properties

@settings(max_examples=30, deadline=None)
@given(
    t=st.integers(1, 5),
    seed=st.integers(0, 2**31),
    method=st.sampled_from(METHODS),
    lam=st.floats(0.0, 1.0),
    density=st.floats(0.05, 1.0),
)
def test_property_finite_and_zero_vectors_merge_to_zero(t, seed, method, lam, density):
    x = torch.randn(t, BIG.numel, generator=torch.Generator().manual_seed(seed))
    out = merge(x, layout=BIG, method=method, lambda_=lam, density=density, drop_rate=0.5, seed=seed)
    assert torch.isfinite(out).all() and out.shape == (BIG.numel,)
    assert torch.equal(merge(torch.zeros_like(x), layout=BIG, method=method, lambda_=lam, density=density, seed=seed),
                       torch.zeros(BIG.numel))


# ----------------------------------------------------------------------------- slice by slice

from rmtllmf_core.science.fusion import RECIPES, Options, kth_largest_sliced, merge_slice, plan_merge  # noqa: E402

# Several tensors of uneven sizes over three layers (stem, two blocks, head).
SLICED_LAYOUT = ParamLayout.from_state({
    "conv1.weight": torch.zeros(37), "transformer.resblocks.0.a": torch.zeros(500),
    "transformer.resblocks.0.b": torch.zeros(3), "transformer.resblocks.1.a": torch.zeros(260),
    "ln_post.weight": torch.zeros(0), "proj": torch.zeros(81),
})


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("density", [0.2, 0.9])
def test_slice_wise_merge_equals_whole_vector_merge(method, density):
    # the streaming path: fresh slices handed one tensor at a time, visited in reverse, written into out
    x = random_vectors(t=4, p=SLICED_LAYOUT.numel, seed=3)
    whole = run(method, vectors=x, layout=SLICED_LAYOUT, density=density, seed=5, lambda_=0.7)
    offsets = SLICED_LAYOUT.offsets
    calls = []

    def slices(i):
        calls.append(i)
        return x[:, offsets[i]:offsets[i + 1]].clone()

    plan = plan_merge(slices, RECIPES[method], layout=SLICED_LAYOUT, n_tasks=4, lambda_=0.7, options=Options(density=density),
                      seed=5)
    out = torch.full((SLICED_LAYOUT.numel,), float("nan"))
    for i in reversed(range(len(SLICED_LAYOUT.names))):
        merge_slice(slices(i), plan, i, out[offsets[i]:offsets[i + 1]])
    assert torch.equal(out, whole)
    passes = {"ties": 3, "layer_aware": 2}.get(method, 1)  # threshold: histogram + bucket; weights: Gram
    assert len(calls) <= passes * len(SLICED_LAYOUT.names)  # (the Gram skips the empty tensor)


def test_kth_largest_sliced_is_exact_with_ties_and_counts_the_larger_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-6, 7, (3, 700), generator=g).float() * 0.5  # many ties
    parts = [x[:, :100], x[:, 100:101], x[:, 101:]]
    for k in (1, 7, 350, 700):
        value, greater = kth_largest_sliced(lambda i: parts[i], 3, 3, k)
        srt = x.abs().sort(1, descending=True).values
        assert torch.equal(value[:, 0], srt[:, k - 1])
        assert torch.equal(greater, (x.abs() > value).sum(1))
    value, _ = kth_largest_sliced(lambda i: parts[i], 3, 3, [1, 2, 3])  # one k per row
    assert torch.equal(value[:, 0], torch.stack([srt[0, 0], srt[1, 1], srt[2, 2]]))
