"""Recompute a loaded zoo's accuracies from its shipped files (what `zoo eval` and the tests run)."""
from __future__ import annotations

import itertools
from typing import Mapping

import torch

from .train import accuracy, set_state
from .types import Zoo


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def head_overlap(heads: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per task, the mean cosine between two different class rows of its frozen head. Near 1 the
    classes' text embeddings are almost collinear: fine-tuning must move the image features far to
    tell them apart, which makes a task slow to learn and its task vector fragile under fusion."""
    out = {}
    for t, h in heads.items():
        h = torch.nn.functional.normalize(h.float(), dim=-1)
        C = len(h)
        out[t] = float(((h @ h.T).sum() - C) / (C * (C - 1))) if C > 1 else float("nan")
    return out


def evaluate_zoo(zoo: Zoo, n: int | Mapping[str, int] | None = None, *, lam: float | None = None, pairs: bool = False,
                 split: str = "test") -> dict:
    """Fine-tuned, zero-shot and task-arithmetic accuracy on the first `n` samples of `split`.

    `n`: one count for every task, or task -> count (a card's `accuracy.n_eval`), or None = the whole split.

    `lam` defaults to the card's validation-chosen lambda; pairs use each pair's card lambda.
    Works on a scratch copy of the encoder's weights and restores the base weights afterwards.
    """
    visual, base, tvs, heads = zoo.model.visual, zoo.base_state, zoo.task_vectors, zoo.heads
    names = [t for t in zoo.task_names if t in tvs]
    data = {t: zoo.split(t, split, n.get(t) if isinstance(n, Mapping) else n) for t in zoo.task_names}
    card_acc = zoo.card.get("accuracy", {})
    if lam is None:
        lam = card_acc.get("task_arithmetic", {}).get("lambda", 0.3)

    def run(deltas, tasks):
        set_state(visual, base, deltas)
        return {t: accuracy(visual, heads[t], *data[t]) for t in tasks}

    try:
        out = {"n": dict(n) if isinstance(n, Mapping) else n, "split": split, "lambda": lam}
        out["zeroshot"] = run([], zoo.task_names)
        out["finetuned"] = {t: run([(1.0, tvs[t])], [t])[t] for t in names}
        if names:
            ta = run([(lam, tvs[t]) for t in names], names)
            out["task_arithmetic"] = ta
            out["task_arithmetic_normalized_avg"] = _mean(ta[t] / max(out["finetuned"][t], 1e-9) for t in names)
            out["zeroshot_normalized_avg"] = _mean(out["zeroshot"][t] / max(out["finetuned"][t], 1e-9) for t in names)
        if pairs:
            out["pairs"] = {}
            for a, b in itertools.combinations(names, 2):
                l2 = card_acc.get("pairs", {}).get(f"{a}+{b}", {}).get("lambda", lam)
                acc = run([(l2, tvs[a]), (l2, tvs[b])], [a, b])
                out["pairs"][f"{a}+{b}"] = _mean(acc[t] / max(out["finetuned"][t], 1e-9) for t in (a, b))
    finally:
        set_state(visual, base)
    return out
