"""Recompute a loaded zoo's accuracies from its shipped files (what `zoo eval` and the tests run)."""
from __future__ import annotations

import itertools
from typing import Mapping

import torch

from .train import accuracy, image_features, set_state
from .types import Zoo


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], *,
                 l2: float = 1e-4, max_iter: int = 300) -> float:
    """Test accuracy of a multinomial logistic regression fitted on `train` = (features [N, D], labels [N]):
    how much of a task the features carry, whatever the head (CLIP's linear-probe evaluation, with
    L-BFGS as there but one fixed L2 penalty on standardised features)."""
    (xtr, ytr), (xte, yte) = train, test
    xtr, xte = xtr.double(), xte.double()
    # standardise on train so one l2 suits any feature scale
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-8)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    C = int(max(int(ytr.max()), int(yte.max()))) + 1
    w = torch.zeros(xtr.shape[1], C, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr.long()) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == yte.long()).double().mean())


def encoder_probe(visual: torch.nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                  test: tuple[torch.Tensor, torch.Tensor], batch: int = 500) -> float:
    """`linear_probe` on `visual`'s image features of (preprocessed images, labels) splits."""
    device = next(visual.parameters()).device
    visual.eval()

    def feats(x):
        with torch.inference_mode():
            return torch.cat([image_features(visual, x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)])

    return linear_probe((feats(train[0]), train[1]), (feats(test[0]), test[1]))


def base_probe(zoo: Zoo, tasks=None, *, n_train: int = 3000) -> dict[str, float]:
    """Per task: linear-probe test accuracy of the base encoder's image features, fitted on the first
    `n_train` train samples: what the base can see. On the tiny zoo the tasks with a low probe are the
    ones that fine-tune least, have the largest task vectors and break the most pairs."""
    set_state(zoo.model.visual, zoo.base_state)
    return {t: encoder_probe(zoo.model.visual, zoo.split(t, "train", min(n_train, zoo.data.size(t, "train"))),
                             zoo.split(t, "test"))
            for t in tasks or zoo.task_names}


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
