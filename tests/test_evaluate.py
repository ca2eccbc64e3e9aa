"""Evaluation: accuracy, normalised accuracy, WDE (eq. 7-8), the logit-ratio test (eq. 9-12)."""
import math

import pytest
import torch

from micro_zoo import IMAGE_SIZE, build_micro_clip, make_micro_zoo
from rmtllmf_core.errors import InputError
from rmtllmf_core.science.evaluate import (Evaluator, _pools_class_token, average, chi2_quantile, disagreement,
    features, logit_deviation, normalized, rejection_rate, rejection_threshold, rejections,
    weight_disentanglement_error)
from rmtllmf_core.science.taskvec import stack


@pytest.fixture(scope="module")
def zoo():
    return make_micro_zoo(n_tasks=3, classes=4, seed=0)


@pytest.fixture(scope="module")
def setup(zoo):
    ev = Evaluator(zoo, zoo.task_names, 64)
    base = ev.layout.flatten(zoo.base_state)
    vectors = stack(ev.layout, zoo.task_vectors, zoo.task_names)
    return ev, base, vectors


def test_micro_zoo_is_deterministic():
    a = make_micro_zoo(n_tasks=3, classes=4, seed=1)
    b = make_micro_zoo(n_tasks=3, classes=4, seed=1)
    assert a.fingerprint == b.fingerprint
    for t in a.task_names:
        for n in a.base_state:
            assert torch.equal(a.base_state[n], b.base_state[n])
            assert torch.equal(a.task_vectors[t][n], b.task_vectors[t][n])
        x1, y1 = a.split(t, "test", 10)
        x2, y2 = b.split(t, "test", 10)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(a.split(t, "test", 5)[0], x1[:5])  # the first n are always the same
        assert a.heads[t].norm(dim=1).sub(1).abs().max() < 1e-6
    assert make_micro_zoo(seed=2).fingerprint != a.fingerprint


def test_micro_zoo_tasks_are_learnt(zoo):
    for t in zoo.task_names:
        assert zoo.finetuned_accuracy[t] > zoo.zeroshot_accuracy[t] + 0.3


def test_evaluator_reproduces_the_zoo_accuracies(zoo):
    ev = Evaluator(zoo, zoo.task_names, 256)  # the whole test split, as the zoo measured it
    base = ev.layout.flatten(zoo.base_state)
    for t in zoo.task_names:
        acc = ev.accuracy(base + ev.layout.flatten(zoo.task_vectors[t]), [t])
        assert acc[t] == pytest.approx(zoo.finetuned_accuracy[t], abs=1e-6)
        assert ev.accuracy(base)[t] == pytest.approx(zoo.zeroshot_accuracy[t], abs=1e-6)


def test_logits_match_a_hand_computed_forward(zoo, setup):
    ev, base, vectors = setup
    flat = base + 0.5 * vectors.sum(0)
    logits = ev.logits(flat)
    # by hand: load the weights into the model, encode, normalise, apply each head
    ref = {n: p.clone() for n, p in zoo.encoder.named_parameters()}
    with torch.no_grad():
        for n, p in zoo.encoder.named_parameters():
            p.copy_(ev.layout.unflatten(flat)[n])
        try:
            for t in zoo.task_names:
                x, _ = zoo.split(t, "test", 64)
                f = zoo.encoder(x)
                f = f / f.norm(dim=1, keepdim=True)
                assert torch.allclose(logits[t], zoo.logit_scale * f @ zoo.heads[t].T, atol=1e-4)
        finally:
            for n, p in zoo.encoder.named_parameters():
                p.copy_(ref[n])
    # the evaluator did not alter the zoo's base weights
    for n, p in zoo.encoder.named_parameters():
        assert torch.equal(p, zoo.base_state[n])


@pytest.mark.parametrize("train", [False, True])
def test_class_token_features_equal_the_encoders_forward(train):
    # the last block on the class token alone: same features and same gradients as the full forward
    encoder = build_micro_clip(seed=3, layers=3).visual.train(train)
    assert _pools_class_token(encoder)
    x = torch.randn(16, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    params = {n: (p.detach() + 0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i))).requires_grad_(train)
              for i, (n, p) in enumerate(encoder.named_parameters())}
    with torch.set_grad_enabled(train):
        ours = features(encoder, params, x)
        full = torch.func.functional_call(encoder, params, (x,))
    assert ours.shape == full.shape == (16, encoder.output_dim)
    assert torch.allclose(ours, full, atol=1e-5, rtol=1e-5)
    if train:
        g_ours = torch.autograd.grad(ours.square().sum(), list(params.values()), allow_unused=True)
        g_full = torch.autograd.grad(full.square().sum(), list(params.values()), allow_unused=True)
        for name, a, b in zip(params, g_ours, g_full):
            assert (a is None) == (b is None), name
            assert a is None or torch.allclose(a, b, atol=1e-5, rtol=1e-4), name
    for n, p in encoder.named_parameters():  # the module's own weights are untouched
        assert not torch.equal(p, params[n])


@pytest.mark.parametrize("variant", [{"quick_gelu": True}, {"ls_init_value": 0.5}, {"no_ln_pre": True}])
def test_plain_forward_covers_open_clip_variants_or_falls_back(variant):
    # QuickGELU and LayerScale are computed by `_vit_features`; an encoder it does not describe (no
    # ln_pre: an Identity there) runs the module's own forward. Either way: the module's features
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from micro_zoo import EMBED_DIM, TEXT_CFG, VISION_CFG

    vision = {**VISION_CFG, "layers": 2, **{k: v for k, v in variant.items() if k != "quick_gelu"}}
    with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the global stream as it was
        torch.manual_seed(5)
        encoder = CLIP(EMBED_DIM, CLIPVisionCfg(**vision), CLIPTextCfg(**TEXT_CFG),
                       quick_gelu=variant.get("quick_gelu", False)).visual.eval()
    assert _pools_class_token(encoder) == ("no_ln_pre" not in variant)
    x = torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    params = {n: p.detach() + 0.01 for n, p in encoder.named_parameters()}
    with torch.no_grad():
        ours = features(encoder, params, x)
        full = torch.func.functional_call(encoder, params, (x,))
    assert torch.allclose(ours, full, atol=1e-5, rtol=1e-5)


def test_features_fall_back_to_the_full_forward_when_other_tokens_matter():
    encoder = build_micro_clip(seed=3, layers=2).visual
    encoder.pool_type = "avg"  # the pooled output now reads every token of the last block
    assert not _pools_class_token(encoder)
    x = torch.randn(8, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    params = dict(encoder.named_parameters())
    assert torch.equal(features(encoder, params, x), encoder(x))


def test_accuracy_on_a_hand_checked_case(setup):
    ev, base, _ = setup
    t0, t1 = ev.tasks[:2]
    preds = {t0: ev.labels[t0].clone(), t1: ev.labels[t1].clone()}
    preds[t1][:16] = (preds[t1][:16] + 1) % 4  # 16 of 64 wrong
    acc = ev.accuracy_from_predictions(preds)
    assert acc == {t0: 1.0, t1: 0.75}
    # predictions are the argmax of the logits, accuracy their agreement with the labels
    logits = ev.logits(base)
    manual = {t: float((logits[t].argmax(1) == ev.labels[t]).float().mean()) for t in ev.tasks}
    assert ev.accuracy(base) == manual


def test_task_subset_equals_the_full_batch(setup):
    ev, base, vectors = setup
    flat = base + 0.3 * vectors.sum(0)
    full = ev.logits(flat)
    part = ev.logits(flat, [ev.tasks[2], ev.tasks[0]])
    assert list(part) == [ev.tasks[2], ev.tasks[0]]
    for t in part:
        assert torch.allclose(part[t], full[t], atol=1e-5)
    with pytest.raises(InputError):
        ev.logits(flat, ["nope"])
    with pytest.raises(InputError):
        ev.logits(flat[:-1])


def test_evaluator_is_safe_across_threads(setup):
    # app sessions share one encoder: concurrent functional calls must not see each other's weights
    from concurrent.futures import ThreadPoolExecutor

    ev, base, vectors = setup
    flats = [base + 0.2 * k * vectors.sum(0) for k in range(6)]
    expected = [ev.logits(f) for f in flats]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(ev.logits, flats))
    for e, g in zip(expected, got):
        assert all(torch.equal(e[t], g[t]) for t in e)


def test_evaluator_rejects_bad_input(zoo):
    with pytest.raises(InputError, match="tasks"):
        Evaluator(zoo, [], 10)
    with pytest.raises(InputError, match="unknown"):
        Evaluator(zoo, ["nope"], 10)


def test_normalized_and_average():
    norm = normalized({"a": 0.45, "b": 0.8}, {"a": 0.9, "b": 0.8, "c": 0.5})
    assert norm == pytest.approx({"a": 0.5, "b": 1.0})
    assert average(norm) == pytest.approx(0.75)
    with pytest.raises(InputError):
        normalized({"a": 0.5}, {"a": 0.0})
    with pytest.raises(InputError):
        normalized({"a": 0.5}, {})


def test_disagreement_is_the_mean_rate_over_tasks():
    ref = {"a": torch.tensor([0, 1, 2, 3]), "b": torch.tensor([1, 1])}
    pred = {"a": torch.tensor([0, 1, 0, 0]), "b": torch.tensor([1, 1])}
    assert disagreement(ref, pred) == pytest.approx((0.5 + 0.0) / 2)


def test_wde_is_zero_when_fused_equals_each_individual(setup):
    ev, base, vectors = setup
    # one task: the fused model *is* the individual one
    ev1 = Evaluator(ev.zoo, ev.tasks[:1], 64)
    assert weight_disentanglement_error(ev1, base, vectors[:1], 1.0, base + vectors[0]) == 0.0
    # all tasks: with identical task vectors and lambda_N * N = lambda_i, the models coincide
    same = vectors[:1].expand(3, -1)
    assert weight_disentanglement_error(ev, base, same, 0.9, base + 0.3 * same.sum(0)) == pytest.approx(0.0, abs=1e-9)


def test_wde_grows_when_tasks_interfere(setup):
    ev, base, vectors = setup
    lam = torch.tensor([1.0, 1.0, 1.0])
    wde = weight_disentanglement_error(ev, base, vectors, lam, base + 1.0 * vectors.sum(0))
    assert 0.0 < wde <= 1.0
    with pytest.raises(InputError):
        weight_disentanglement_error(ev, base, vectors[:2], 1.0, base)
    with pytest.raises(InputError):
        weight_disentanglement_error(ev, base, vectors, [1.0, 1.0], base)


def test_rejection_rate_zero_for_identical_models(setup):
    ev, base, vectors = setup
    z = ev.logits(base + 0.4 * vectors.sum(0))
    assert rejection_rate(z, {t: v.clone() for t, v in z.items()}, 0.05) == 0.0
    # a common shift of all logits changes no prediction: not rejected either
    assert rejection_rate(z, {t: v + 3.0 for t, v in z.items()}, 0.05) == 0.0


def test_rejection_rate_grows_with_noise_on_the_fused_model(setup):
    ev, base, vectors = setup
    fused = base + 0.4 * vectors.sum(0)
    z_u = ev.logits(fused)
    rates = []
    for std in (0.0, 1e-3, 1e-2, 1e-1):
        g = torch.Generator().manual_seed(0)
        rates.append(rejection_rate(z_u, ev.logits(fused + std * torch.randn(fused.shape, generator=g)), 0.05))
    assert rates[0] == 0.0
    assert all(a <= b for a, b in zip(rates, rates[1:])) and rates[-1] > 0.5


def test_rejection_is_monotone_in_the_disturbance_and_alpha():
    g = torch.Generator().manual_seed(3)
    z_u = 5 * torch.randn(500, 6, generator=g)
    direction = torch.randn(500, 6, generator=g)
    rates = [rejection_rate(z_u, z_u + s * direction, 0.05) for s in (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)]
    assert rates[0] == 0.0 and rates == sorted(rates) and rates[-1] > 0.9
    lax, strict = (rejection_rate(z_u, z_u + 0.5 * direction, a) for a in (0.2, 0.01))
    assert lax >= strict


def test_rejection_matches_the_ratio_form():
    g = torch.Generator().manual_seed(4)
    z_u = 4 * torch.randn(300, 5, generator=g, dtype=torch.float64)
    z_d = z_u + 0.7 * torch.randn(300, 5, generator=g, dtype=torch.float64)
    by_ratio = logit_deviation(z_u, z_d) > rejection_threshold(z_u, 0.05)
    assert torch.equal(by_ratio, rejections(z_u, z_d, 0.05))
    # two classes by hand: centred z_u = [2, -2], margin 4; dz = [-d, d], ||dz|| = sqrt(2) d.
    # chi-square(1) quantile 0.95 = 1.96^2, so reject iff sqrt(2) d > 4 / sqrt(2) * 1.96, d > 3.92
    z_u2 = torch.tensor([[2.0, -2.0]])
    edge = 2 * 1.959963984540054
    assert rejections(z_u2, z_u2 + torch.tensor([[-1.001 * edge, 1.001 * edge]]), 0.05).item()
    assert not rejections(z_u2, z_u2 + torch.tensor([[-0.999 * edge, 0.999 * edge]]), 0.05).item()
    assert rejection_threshold(z_u2, 0.05).item() == pytest.approx(4 / (2**0.5 * 8**0.5) * 1.959963984540054)


def test_rejection_rate_is_alpha_at_the_null_boundary():
    # noise exactly at the H0 boundary sigma_0 = m / sqrt(2 (C - 1)): a fraction alpha is rejected
    g = torch.Generator().manual_seed(5)
    n, c = 20000, 5
    z_u = torch.zeros(n, c, dtype=torch.float64)
    z_u[:, 0] = 3.0  # margin 3 on every sample
    sigma0 = 3.0 / (2 * (c - 1)) ** 0.5
    z_d = z_u + sigma0 * torch.randn(n, c, generator=g, dtype=torch.float64)
    for alpha in (0.05, 0.2):
        assert rejection_rate(z_u, z_d, alpha) == pytest.approx(alpha, abs=0.01)


def test_chi2_quantile_matches_known_values():
    # table values: chi2.ppf(0.95, 1) = 1.959964^2, (0.95, 9) = 16.918978, (0.99, 396) = 464.394590 (scipy)
    assert chi2_quantile(0.95, 1) == pytest.approx(1.959963984540054**2, rel=1e-9)
    assert chi2_quantile(0.95, 9) == pytest.approx(16.918977604620448, rel=1e-9)
    assert chi2_quantile(0.5, 2) == pytest.approx(2 * math.log(2), rel=1e-9)  # exponential median
    assert chi2_quantile(0.99, 396) == pytest.approx(464.3945904142693, rel=1e-9)


def test_rejection_rate_validates_input():
    z = torch.zeros(3, 4)
    with pytest.raises(InputError, match="significance"):
        rejection_rate(z, z, 0.7)
    with pytest.raises(InputError):
        rejection_rate(z, torch.zeros(3, 5), 0.05)
    with pytest.raises(InputError):
        rejection_rate({"a": z}, {"b": z}, 0.05)
