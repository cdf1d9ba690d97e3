"""Decoding drafts a whole block in one forward, exactly what the training forward predicts."""

from __future__ import annotations

import pytest
import torch

from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy


def _setup():
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    strategy = DFlashStrategy(DFlashOptions(block_size=5, num_draft_layers=2))
    torch.manual_seed(0)
    draft = strategy.build_draft(info, None)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 47, (16,), generator=gen)
    feats = torch.randn(16, draft.config.context_width, generator=gen, dtype=torch.float64)
    return strategy, draft, ids, feats


@pytest.mark.parametrize("p", [0, 6])
def test_propose_returns_the_training_forwards_argmax_for_a_block_at_the_last_token(p):
    strategy, draft, ids, feats = _setup()
    accepted = ids[: p + 1].tolist()
    state = strategy.begin_decode(draft, accepted[:-1], {"hidden_states": feats[:p]})
    proposal = strategy.propose(draft, state, accepted, {"hidden_states": feats[:p]}, k=10)
    anchors, keep = torch.tensor([[p]]), torch.tensor([[True]])
    blocks = noise_blocks(ids[None], anchors, keep, 5, draft.config.mask_token_id)
    with torch.no_grad():  # the training layout: the full sequence's features, a block anchored at p
        logits = draft(feats[None], blocks, anchors, keep)["logits"]
    assert proposal == logits[0, 0, 1:].argmax(-1).tolist()
    assert len(proposal) == 4


def test_propose_returns_at_most_k_tokens():
    strategy, draft, ids, feats = _setup()
    state = strategy.begin_decode(draft, ids[:4].tolist(), {})
    assert len(strategy.propose(draft, state, ids[:5].tolist(), {"hidden_states": feats[:4]}, k=2)) == 2


def test_propose_refuses_features_that_miss_verified_tokens():
    strategy, draft, ids, feats = _setup()
    state = strategy.begin_decode(draft, ids[:4].tolist(), {})
    with pytest.raises(ValueError, match="cover 3 tokens"):
        strategy.propose(draft, state, ids[:6].tolist(), {"hidden_states": feats[:3]}, k=4)


def test_propose_refuses_features_of_other_target_layers():
    strategy, draft, ids, feats = _setup()
    state = strategy.begin_decode(draft, ids[:4].tolist(), {})
    with pytest.raises(ValueError, match="target_layer_ids"):
        strategy.propose(draft, state, ids[:5].tolist(), {"hidden_states": feats[:4, :32]}, k=4)
