"""Parallel drafting: k tokens from ONE draft forward, equal to what the training forward predicts
for the same chain, and to the slow reference; never deeper than the trained depths."""

from __future__ import annotations

import torch
from peagle_reference import reference_logits
from peagle_tiny import build
from specforge_peagle.cod import cod_sample
from specforge_peagle.decode import draft_parallel
from specforge_peagle.elements import stack_elements

from specforge_eagle3.teacher import shift_left


def features_of(sample, n):
    return {"hidden_states": sample["hidden_states"][:n], "last_hidden": sample["last_hidden"][:n]}


def test_propose_runs_one_draft_forward_for_all_k_tokens() -> None:
    strategy, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 5})
    calls = []
    draft.layers[0].register_forward_hook(lambda *_: calls.append(1))
    s = samples[0]
    accepted = s["input_ids"][:7].tolist()
    state = strategy.begin_decode(draft, accepted[:6], features_of(s, 5))
    tokens = strategy.propose(draft, state, accepted, features_of(s, 6), 4)
    assert len(tokens) == 4 and len(calls) == 1
    assert len(strategy.propose(draft, state, accepted, features_of(s, 6), 9)) == 5  # capped at num_depths


def test_propose_equals_the_training_forward_argmax_of_the_same_chain() -> None:
    """Training scores every chain at once (here: keep-all COD over a whole sample); the chain of
    anchor n-1 must predict exactly what drafting after accepted_ids = x_0..x_n proposes."""
    strategy, draft, _, samples = build({"num_draft_layers": 3, "num_depths": 4})
    s = samples[0]
    length = len(s["input_ids"])
    supervised = torch.ones(length, dtype=torch.bool)
    supervised[-1] = False  # no teacher after the last position
    pairs = cod_sample(supervised, torch.zeros(length, dtype=torch.int64), 4, 1.0, 1.0)
    anchors, depths, documents = stack_elements([pairs])
    with torch.no_grad():
        logits = draft.element_logits(shift_left(s["input_ids"][None]), s["hidden_states"][None],
                                      anchors, depths, documents)[0]
    for n in range(2, length - 4):
        accepted = s["input_ids"][:n + 1].tolist()
        chain = [int(((anchors[0] == n - 1) & (depths[0] == d)).nonzero()) for d in range(4)]
        expected = draft.to_target_ids(logits[chain].argmax(-1)).tolist()
        got = strategy.propose(draft, strategy.begin_decode(draft, accepted, {}), accepted, features_of(s, n), 4)
        assert got == expected, n


def test_propose_equals_the_slow_reference() -> None:
    strategy, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 3})
    s = samples[1]
    n = 4
    accepted = s["input_ids"][:n + 1].tolist()
    elements = [(t, 0, 0) for t in range(n)] + [(n - 1, d, 0) for d in (1, 2)]
    with torch.no_grad():
        logits = reference_logits(draft, torch.tensor(accepted), s["hidden_states"][:n], elements)
    expected = [int(draft.to_target_ids(torch.stack(logits[n - 1:]).argmax(-1))[i]) for i in range(3)]
    assert strategy.propose(draft, None, accepted, features_of(s, n), 3) == expected


def test_drafted_positions_read_the_mask_token_and_mask_hidden() -> None:
    """Changing mask_hidden changes depths >= 1 only; the first drafted token does not depend on it."""
    _, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 4})
    s = samples[0]
    accepted = s["input_ids"][:6].tolist()
    _, before = draft_parallel(draft, accepted, features_of(s, 5), 4)
    with torch.no_grad():
        draft.mask_hidden.add_(1.0)
    _, after = draft_parallel(draft, accepted, features_of(s, 5), 4)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert all(not torch.allclose(after[d], before[d]) for d in (1, 2, 3))
