"""Defenses: freeze (R-MTLLMF), realign (R-MTLLMF), shrink and trim (ours)."""
import pytest
import torch

from micro_zoo import make_micro_zoo
from rmtllmf_core import defense
from rmtllmf_core.errors import InputError
from rmtllmf_core.taskvec import EMBEDDING_GROUPS, ParamLayout, stack


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
