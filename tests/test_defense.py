"""Defenses: freeze (R-MTLLMF), realign (R-MTLLMF), shrink and trim (ours)."""
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from micro_zoo import make_micro_zoo
from rmtllmf_core.science import defense
from rmtllmf_core.errors import InputError
from rmtllmf_core.science.evaluate import Evaluator, average
from rmtllmf_core.science.taskvec import EMBEDDING_GROUPS, ParamLayout, stack
from rmtllmf_core.experiment.scenario import Scenario


@pytest.fixture(scope="module")
def zoo():
    return make_micro_zoo(n_tasks=3, classes=4, seed=0)


@pytest.fixture(scope="module")
def flats(zoo):
    layout = ParamLayout.from_state(zoo.base_state)
    return layout, layout.flatten(zoo.base_state), stack(layout, zoo.task_vectors, zoo.task_names)


def test_freeze_restores_the_base_embeddings_bit_for_bit(flats):
    layout, base, vectors = flats
    g = torch.Generator().manual_seed(0)
    fused = base + 0.3 * vectors.sum(0) + torch.randn(base.shape, generator=g)
    before = fused.clone()
    out = defense.freeze(fused, base, layout, EMBEDDING_GROUPS)
    mask = layout.mask(EMBEDDING_GROUPS)
    assert mask.any() and not mask.all()
    assert torch.equal(out[mask], base[mask])
    assert torch.equal(out[~mask], fused[~mask])
    assert torch.equal(fused, before)  # the input is untouched
    # only the positional embedding
    out = defense.freeze(fused, base, layout, ["positional_embedding"])
    pos = layout.slice("positional_embedding")
    assert torch.equal(out[pos], base[pos])
    assert torch.equal(out[layout.slice("class_embedding")], fused[layout.slice("class_embedding")])
    assert torch.equal(defense.freeze(fused, base, layout, []), fused)


def test_freeze_rejects_unknown_groups_and_shapes(flats):
    layout, base, _ = flats
    with pytest.raises(InputError, match="freeze_groups"):
        defense.freeze(base, base, layout, ["nope"])
    with pytest.raises(InputError):
        defense.freeze(base[:-1], base, layout, EMBEDDING_GROUPS)


# ---------------------------------------------------------------- shrink

def _shrink_by_hand(received, var, layout):
    """The LMMSE formula written out tensor by tensor, in float64."""
    out = torch.empty_like(received, dtype=torch.float64)
    for t in range(received.shape[0]):
        for name in layout.names:
            sl = layout.slice(name)
            r = received[t, sl].double()
            n = var[t, sl].double().mean()
            s = max(float((r * r).mean() - n), 0.0)
            gain = 1.0 if s + n == 0 else s / (s + float(n))
            out[t, sl] = gain * r
    return out


def test_shrink_matches_the_formula(flats):
    layout, _, vectors = flats
    g = torch.Generator().manual_seed(1)
    # one std per vector, and one per element (here: per tensor, as `per_tensor` noise has)
    per_vector = torch.tensor([[0.01], [0.05], [0.0]])
    per_element = layout.expand_per_tensor(0.03 * torch.rand(3, len(layout.names), generator=g))
    per_entry = 0.03 * torch.rand(3, layout.numel, generator=g)
    for std in (per_vector, per_element, per_entry, torch.tensor(0.02)):
        received = vectors + std * torch.randn(vectors.shape, generator=g)
        before = received.clone()
        out = defense.shrink(received, std, layout)
        assert torch.equal(received, before)
        var = torch.as_tensor(std).expand(received.shape) ** 2
        assert torch.allclose(out.double(), _shrink_by_hand(received, var, layout), rtol=1e-5, atol=1e-8)
    # no noise: untouched; one vector alone ([P]) works like a row
    assert torch.equal(defense.shrink(vectors, torch.zeros(3, 1), layout), vectors)
    assert torch.allclose(defense.shrink(vectors[1], torch.tensor(0.05), layout),
                          defense.shrink(vectors, torch.tensor(0.05), layout)[1])


def test_shrink_zeroes_pure_noise_and_reduces_the_error(flats):
    layout, _, vectors = flats
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(vectors.shape, generator=g)
    rms = vectors.pow(2).mean().sqrt()
    received = vectors + 3 * rms * noise
    restored = defense.shrink(received, 3 * rms, layout)
    assert (restored - vectors).norm() < 0.8 * (received - vectors).norm()
    # a received vector of pure noise much stronger than any signal is pulled to ~0
    loud = defense.shrink(100 * noise[:1], torch.tensor(100.0), layout)
    assert loud.norm() < 0.2 * (100 * noise[:1]).norm()
    with pytest.raises(InputError, match="noise_std"):
        defense.shrink(vectors, -torch.ones(1), layout)
    with pytest.raises(InputError, match="noise_std"):
        defense.shrink(vectors, torch.ones(2, 1), layout)
    with pytest.raises(InputError, match="noise_std"):
        defense.shrink(vectors[0], torch.ones(3, 1), layout)  # would broadcast the one vector to three


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 10.0))
def test_shrink_only_scales_each_tensor_down(seed, std):
    layout = ParamLayout(("a", "b"), ((3,), (2, 2)), (0, 3, 7))
    received = torch.randn(2, 7, generator=torch.Generator().manual_seed(seed))
    out = defense.shrink(received, torch.tensor(std), layout)
    ratio = torch.where(received != 0, out / received, torch.zeros_like(out))
    for sl in (slice(0, 3), slice(3, 7)):
        r = ratio[:, sl]
        assert ((r >= 0) & (r <= 1 + 1e-6)).all()
        assert torch.allclose(r, r[:, :1].expand_as(r))  # one gain per tensor


# ---------------------------------------------------------------- trim

def test_trim_keeps_the_largest_entries_of_each_vector():
    received = torch.tensor([[0.1, -5.0, 0.3, 2.0, -0.2, 0.0, 1.0, -0.05],
                             [1.0, 2.0, 3.0, 4.0, -5.0, -6.0, 7.0, 8.0]])
    before = received.clone()
    out = defense.trim(received, 0.25)  # 2 of 8 per row
    assert torch.equal(out, torch.tensor([[0.0, -5.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0],
                                          [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0, 8.0]]))
    assert torch.equal(received, before)
    assert torch.equal(defense.trim(received, 1.0), received)
    assert (defense.trim(received, 0.3) != 0).sum(dim=1).tolist() == [3, 3]  # ceil(2.4)
    assert torch.equal(defense.trim(received[1], 0.125), torch.tensor([0.0] * 7 + [8.0]))
    # ties at the cut: exactly k entries survive
    assert (defense.trim(torch.ones(1, 10), 0.5) != 0).sum().item() == 5
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InputError, match="trim_keep_fraction"):
            defense.trim(received, bad)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 1.0))
def test_trim_keeps_k_entries_none_smaller_than_a_dropped_one(seed, keep):
    received = torch.randn(3, 40, generator=torch.Generator().manual_seed(seed))
    out = defense.trim(received, keep)
    k = math.ceil(keep * 40 - 1e-9)
    kept = out != 0
    assert kept.sum(dim=1).tolist() == [k] * 3
    assert torch.equal(out[kept], received[kept])
    for row, mask in zip(received.abs(), kept):
        if not mask.all():
            assert row[mask].min() >= row[~mask].max()


# ---------------------------------------------------------------- realign

def _noisy_fused(flats, std=0.03, seed=0):
    layout, base, vectors = flats
    g = torch.Generator().manual_seed(seed)
    return base + 0.5 * vectors.sum(0) + std * torch.randn(base.shape, generator=g)


def test_few_shot_set_holds_each_classs_first_pool_samples_however_the_pool_is_ordered(zoo):
    tasks = zoo.task_names[:2]
    k = 3

    def expected(data):
        rows = []
        for t in tasks:
            x, y = data(t, "pool", None)
            rows += [x[(y == c).nonzero().squeeze(1)[:k]] for c in range(zoo.heads[t].shape[0])]
        return torch.cat(rows)

    interleaved = defense._few_shot_set(zoo, tasks, k)  # reads the first k x classes samples alone
    assert torch.equal(interleaved[0], expected(zoo.data))

    def by_class(task, split, n=None):  # a pool sorted by class: its first k x classes hold one class
        x, y = zoo.data(task, split, None)
        order = torch.sort(y, stable=True).indices
        return (x[order], y[order]) if n is None else (x[order][:n], y[order][:n])

    sorted_zoo = dataclasses.replace(zoo, data=by_class)
    images, labels, task_index, _, _ = defense._few_shot_set(sorted_zoo, tasks, k)
    assert torch.equal(images, expected(by_class))
    assert labels.tolist() == [c for t in tasks for c in range(zoo.heads[t].shape[0]) for _ in range(k)]


def test_realign_leaves_frozen_entries_and_inputs_untouched(zoo, flats):
    layout, base, _ = flats
    fused = defense.freeze(_noisy_fused(flats), base, layout, EMBEDDING_GROUPS)
    before = fused.clone()
    mask = layout.mask(EMBEDDING_GROUPS)
    out = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(5, 10, 1e-2),
                          frozen_mask=mask, seed=0)
    assert torch.equal(fused, before)
    assert torch.equal(out[mask], fused[mask])                  # bit for bit, weight decay included
    assert (out[~mask] != fused[~mask]).float().mean() > 0.9   # everything else was trained
    for n, p in zoo.encoder.named_parameters():                 # the zoo's base weights are intact
        assert torch.equal(p, zoo.base_state[n])


def test_realign_improves_accuracy(zoo, flats):
    layout, _, _ = flats
    ev = Evaluator(zoo, zoo.task_names, 128)
    fused = _noisy_fused(flats, std=0.05)
    before = average(ev.accuracy(fused))
    out = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(10, 30, 3e-3),
                          frozen_mask=torch.zeros(layout.numel, dtype=torch.bool), seed=0)
    after = average(ev.accuracy(out))
    assert after > before + 0.1, (before, after)


def test_realign_is_deterministic_from_the_seed(zoo, flats):
    layout, _, _ = flats
    fused = _noisy_fused(flats)
    mask = layout.mask(["positional_embedding"])
    calls = []
    budget = defense.Budget(shots_per_class=3, steps=6, lr=1e-3, batch_size=8)
    a = defense.realign(zoo, fused, layout, zoo.task_names, budget, frozen_mask=mask, seed=7, progress=calls.append)
    b = defense.realign(zoo, fused, layout, zoo.task_names, budget, frozen_mask=mask, seed=7)
    c = defense.realign(zoo, fused, layout, zoo.task_names, budget, frozen_mask=mask, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert calls == pytest.approx([(i + 1) / 6 for i in range(6)])
    # the batch is part of the budget: another batch, another trajectory; the scenario's field reaches it
    d = defense.realign(zoo, fused, layout, zoo.task_names, dataclasses.replace(budget, batch_size=4),
                        frozen_mask=mask, seed=7)
    assert not torch.equal(a, d)
    scenario = Scenario.parse({"tasks": ["digits"], "defense": {"realign_batch_size": 4}})
    assert defense.Budget.of(scenario.defense).batch_size == 4
    with pytest.raises(InputError, match="defense.realign_batch_size"):
        dataclasses.replace(budget, batch_size=0)


def test_realign_in_bfloat16_follows_float32_and_leaves_autocast_off(zoo, flats):
    # mixed precision: bf16 matmuls, float32 weights and optimiser. Each step must see the weights the
    # last step wrote (autocast caches bf16 copies until its context closes: a stale cache once made
    # a whole realignment train on the starting weights), frozen entries stay bit for bit, and nothing
    # of autocast outlives the call
    layout, base, _ = flats
    fused = defense.freeze(_noisy_fused(flats, std=0.05), base, layout, EMBEDDING_GROUPS)
    mask = layout.mask(EMBEDDING_GROUPS)
    opts = dict(frozen_mask=mask, seed=0)
    a = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(10, 30, 3e-3, "float32"), **opts)
    b = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(10, 30, 3e-3, "bfloat16"), **opts)
    assert not torch.is_autocast_enabled("cpu")
    assert torch.equal(b[mask], fused[mask]) and b.dtype == torch.float32
    moved = (a - fused).norm()
    assert (b - a).norm() < 0.1 * moved, ((b - a).norm(), moved)  # the same trajectory, up to bf16 rounding
    ev = Evaluator(zoo, zoo.task_names, 128)
    assert abs(average(ev.accuracy(b)) - average(ev.accuracy(a))) < 0.03
    with pytest.raises(InputError, match="defense.realign_precision"):
        defense.Budget(10, 30, 3e-3, "float8")


def test_realign_on_a_task_subset_and_bad_input(zoo, flats):
    layout, base, _ = flats
    none = torch.zeros(layout.numel, dtype=torch.bool)
    out = defense.realign(zoo, base, layout, zoo.task_names[:1], defense.Budget(2, 2, 1e-3),
                          frozen_mask=none, seed=0)
    assert out.shape == base.shape and not torch.equal(out, base)
    with pytest.raises(InputError, match="shots_per_class"):
        defense.realign(zoo, base, layout, zoo.task_names, defense.Budget(21, 1, 1e-3),
                        frozen_mask=none, seed=0)  # the micro pool holds 20 per class
    with pytest.raises(InputError, match="tasks"):
        defense.realign(zoo, base, layout, ["nope"], defense.Budget(1, 1, 1e-3), frozen_mask=none, seed=0)
    with pytest.raises(InputError, match="frozen_mask"):
        defense.realign(zoo, base, layout, zoo.task_names, defense.Budget(1, 1, 1e-3),
                        frozen_mask=none[:-1], seed=0)
    with pytest.raises(InputError, match="realign_steps"):
        defense.Budget(1, 0, 1e-3)
    with pytest.raises(InputError, match="realign_lr"):
        defense.Budget(1, 1, float("nan"))


def test_realign_with_everything_frozen_is_the_identity(zoo, flats):
    layout, base, _ = flats
    calls = []
    out = defense.realign(zoo, base, layout, zoo.task_names, defense.Budget(1, 3, 1e-3),
                          frozen_mask=torch.ones(layout.numel, dtype=torch.bool), seed=0, progress=calls.append)
    assert torch.equal(out, base) and out is not base and calls == [1.0]


def test_realign_works_under_inference_mode(zoo, flats):
    # the engine may call it from evaluation code; training must still get gradients
    layout, base, _ = flats
    with torch.inference_mode():
        fused = base + 0.0
        out = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(2, 2, 1e-3),
                              frozen_mask=torch.zeros(layout.numel, dtype=torch.bool), seed=0)
    assert not torch.equal(out, base)


def test_realign_with_a_partly_frozen_tensor(zoo, flats):
    # frozen masks need not follow tensor boundaries: every third entry frozen, the rest trained
    layout, _, _ = flats
    fused = _noisy_fused(flats)
    mask = torch.arange(layout.numel) % 3 == 0
    out = defense.realign(zoo, fused, layout, zoo.task_names, defense.Budget(3, 4, 1e-2),
                          frozen_mask=mask, seed=0)
    assert torch.equal(out[mask], fused[mask])
    assert (out[~mask] != fused[~mask]).float().mean() > 0.9


# ---------------------------------------------------------------- slice by slice (the engine's path)

def _tensor_slices(x, layout):
    offsets = layout.offsets
    return lambda i: x[:, offsets[i]:offsets[i + 1]].clone()


def test_freeze_in_place_equals_freeze_and_marks_whole_tensors(flats, zoo):
    layout, base, vectors = flats
    fused = base + 0.3 * vectors.sum(0)
    want = defense.freeze(fused, base, layout, EMBEDDING_GROUPS)
    got = defense.freeze_(fused.clone(), zoo.base_state, layout, EMBEDDING_GROUPS)
    assert torch.equal(got, want)
    per_tensor = defense.frozen_tensors(layout, EMBEDDING_GROUPS)
    assert torch.equal(layout.expand_per_tensor(torch.tensor(per_tensor)), layout.mask(EMBEDDING_GROUPS))


def test_shrink_slice_by_slice_equals_shrink(flats):
    layout, _, vectors = flats
    g = torch.Generator().manual_seed(1)
    std = 0.03 * torch.rand(3, len(layout.names), generator=g, dtype=torch.float64)
    received = vectors + layout.expand_per_tensor(std.float()) * torch.randn(vectors.shape, generator=g)
    want = defense.shrink(received, layout.expand_per_tensor(std.float()), layout)
    got = received.clone()
    for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
        defense.shrink_slice_(got[:, a:b], std.float().double()[:, i].square())
    assert torch.allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.999])
def test_trim_slice_by_slice_equals_trim_ties_included(flats, keep):
    layout, _, vectors = flats
    # many ties: a coarse grid of values, so the cut falls inside a run of equal magnitudes
    x = torch.round(vectors / vectors.abs().max() * 8) / 8
    want = defense.trim(x, keep)
    plan = defense.plan_trim(_tensor_slices(x, layout), len(layout.names), 3, layout.numel, keep)
    got = x.clone()
    for i, (a, b) in enumerate(zip(layout.offsets, layout.offsets[1:])):
        piece = got[:, a:b].clone()
        defense.trim_slice_(piece, plan, i)
        got[:, a:b] = piece
    assert torch.equal(got, want)
    k = math.ceil(keep * layout.numel - 1e-9)
    assert ((got != 0).sum(1) <= k).all()  # kept entries may be zeros of x; never more than k non-zeros
    assert defense.plan_trim(_tensor_slices(x, layout), len(layout.names), 3, layout.numel, 1.0) is None
