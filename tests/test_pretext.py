"""The pretext corpus: deterministic, prefix-stable, captions that say what the image shows, and
concept pictures that never reuse a task's own samples."""
from __future__ import annotations

import numpy as np
import pytest

from rmtllmf_core.errors import InputError
from rmtllmf_core.zoo import pretext
from rmtllmf_core.zoo import tasks as T

CLASS_NAMES = {c for t in T.TASK_NAMES for c in T.TASKS[t].class_names}


def _concepts(caption: str) -> list[str]:
    """The class names a caption mentions as objects ("a <size> <name> at the <where>")."""
    found = []
    for part in caption.split(" on a ")[0].split(" and a "):
        words = part.removeprefix("a ").split(" ", 1)[1].rsplit(" at the ", 1)[0]
        if words in CLASS_NAMES:
            found.append(words)
    return found


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_deterministic_and_prefix_stable(fraction):
    a, ca = pretext.generate(3, 300, chunk=128, concept_fraction=fraction)
    b, cb = pretext.generate(3, 300, chunk=128, concept_fraction=fraction)
    c, cc = pretext.generate(3, 256, chunk=128, concept_fraction=fraction)  # whole chunks are a prefix
    assert a.dtype == np.uint8 and a.shape == (300, 32, 32, 3)
    assert np.array_equal(a, b) and ca == cb
    assert np.array_equal(a[:256], c) and ca[:256] == cc
    d, _ = pretext.generate(4, 300, chunk=128, concept_fraction=fraction)
    assert not np.array_equal(a, d)


def test_without_concepts_no_class_name_appears():
    _, caps = pretext.generate(0, 512, concept_fraction=0.0)
    assert not any(_concepts(c) for c in caps)


def test_concept_fraction_is_respected_and_every_caption_is_well_formed():
    _, caps = pretext.generate(0, 1024, concept_fraction=0.5)
    share = np.mean([bool(_concepts(c)) for c in caps])
    assert 0.44 < share < 0.56
    named = {n for c in caps for n in _concepts(c)}
    assert len(named) > 0.9 * len(CLASS_NAMES)  # nearly every class is seen
    # concept captions name the concept, not the background (else colours alone tell a batch apart)
    assert all(c.startswith("a ") and (" background" in c) != bool(_concepts(c)) for c in caps)


def test_concept_pictures_change_the_image_they_caption():
    """The same corpus without concepts differs exactly where a concept was pasted."""
    plain, caps0 = pretext.generate(1, 256, concept_fraction=0.0)
    mixed, caps1 = pretext.generate(1, 256, concept_fraction=0.5)
    has = np.array([bool(_concepts(c)) for c in caps1])
    assert has.any() and (~has).any()
    differs = np.abs(plain.astype(int) - mixed.astype(int)).reshape(256, -1).max(1) > 0
    assert differs[has].all()
    assert [c for c, h in zip(caps0, has) if not h] == [c for c, h in zip(caps1, has) if not h]


def test_concept_pictures_are_not_task_samples(monkeypatch):
    """Concepts are drawn by the task renderers from the corpus's own random stream: the corpus
    never reads a task split (train / val / test / pool), so no task sample can leak into it."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the pretext corpus read a task split")

    monkeypatch.setattr(T, "generate", forbidden)
    _, caps = pretext.generate(0, 128, concept_fraction=1.0)
    assert all(_concepts(c) for c in caps)


def test_caption_noise_renames_within_the_task_and_keeps_the_pictures():
    clean_img, clean = pretext.generate(2, 512, concept_fraction=1.0, caption_noise=0.0)
    noisy_img, noisy = pretext.generate(2, 512, concept_fraction=1.0, caption_noise=0.5)
    assert np.array_equal(clean_img, noisy_img)  # the same pictures, only some captions lie
    tasks_of: dict[str, set] = {}
    for t in T.TASK_NAMES:
        for c in T.TASKS[t].class_names:
            tasks_of.setdefault(c, set()).add(t)  # "forest" is a land cover and a scene
    pairs = [(_concepts(a)[0], _concepts(b)[0]) for a, b in zip(clean, noisy)]
    changed = [(a, b) for a, b in pairs if a != b]
    assert 0.36 < len(changed) / len(pairs) < 0.54  # half relabelled, 1 in 10 to the same class
    assert all(tasks_of[a] & tasks_of[b] for a, b in changed)


def test_caption_noise_per_task_renames_only_the_named_tasks_and_checks_its_input():
    clean_img, clean = pretext.generate(2, 512, concept_fraction=1.0, caption_noise=0.0)
    img, noisy = pretext.generate(2, 512, concept_fraction=1.0, caption_noise={"*": 0.0, "house_numbers": 1.0})
    assert np.array_equal(clean_img, img)
    hn = set(T.TASKS["house_numbers"].class_names)
    changed = [(a, b) for a, b in zip(clean, noisy) if a != b]
    assert changed and all(set(_concepts(a)) <= hn and set(_concepts(b)) <= hn for a, b in changed)
    n_hn = sum(bool(set(_concepts(a)) & hn) for a in clean)
    assert 0.8 < len(changed) / n_hn <= 1.0  # every house number relabelled, 1 in 10 to the same digit
    # a share for every task ("*") gives the corpus the number gives
    assert pretext.generate(2, 300, concept_fraction=1.0, caption_noise={"*": 0.4})[1] == \
        pretext.generate(2, 300, concept_fraction=1.0, caption_noise=0.4)[1]
    for bad, says in [({"housenumbers": 0.1}, "unknown task.*housenumbers"), ({"*": 1.5}, r"\[0, 1\]"), ("0.4", r"\[0, 1\]")]:
        with pytest.raises(InputError, match="recipe.pretext.caption_noise: .*" + says):
            pretext.generate(0, 8, caption_noise=bad)
