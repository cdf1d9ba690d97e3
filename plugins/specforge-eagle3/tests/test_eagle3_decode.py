"""Chain drafting: k tokens per call, the training unroll's semantics, and a draft that copies its
target proposes exactly the target's greedy continuation."""

from __future__ import annotations

import pytest
import torch
from eagle3_tiny import build

from specforge.nn.attention import causal_mask
from specforge_eagle3.attention import TTTCache
from specforge_eagle3.decode import draft_chain
from specforge_eagle3.teacher import shift_left


def random_case(k_vocab: int = 24):
    strategy, draft, info = build({"draft_vocab_size": k_vocab}, counts={t: 1 + t % 7 for t in range(40)},
                                  hidden=32, heads=4, kv_heads=2, vocab=40)
    with torch.no_grad():
        for p in draft.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    return strategy, draft, info


def features_for(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(n, 96, generator=gen, dtype=torch.float64),
            "last_hidden": torch.randn(n, 32, generator=gen, dtype=torch.float64)}


def test_propose_returns_k_target_ids_from_the_draft_vocabulary() -> None:
    strategy, draft, _ = random_case()
    accepted = [3, 17, 5, 22, 9, 31, 4]
    state = strategy.begin_decode(draft, accepted[:-1], features_for(6))
    proposal = strategy.propose(draft, state, accepted, features_for(6), 5)
    assert len(proposal) == 5 and all(type(t) is int for t in proposal)
    in_vocab = set(draft.t2d.nonzero().flatten().tolist())
    assert set(proposal) <= in_vocab


def test_propose_uses_only_the_features_of_accepted_ids_but_the_last() -> None:
    strategy, draft, _ = random_case()
    accepted = [3, 17, 5, 22, 9]
    feats = features_for(4)
    longer = {k: torch.cat([v, torch.randn_like(v[:3])]) for k, v in feats.items()}
    assert strategy.propose(draft, None, accepted, longer, 3) == strategy.propose(draft, None, accepted, feats, 3)
    with pytest.raises(ValueError, match=r"accepted_ids\[:-1\]"):
        strategy.propose(draft, None, accepted, features_for(3), 3)


def test_drafting_computes_what_the_training_unroll_computes_at_the_last_position() -> None:
    """Teacher-forcing the drafted tokens through the training-time unroll (full sequence,
    diagonal attention) gives the same logits at the last fed position, step after step."""
    strategy, draft, _ = random_case()
    accepted = [3, 17, 5, 22, 9, 31, 4]
    n = len(accepted) - 1
    k = 4
    proposal, logits_seen = draft_chain(draft, accepted, features_for(n), k)
    assert proposal == strategy.propose(draft, None, accepted, features_for(n), k)
    ids = torch.tensor([accepted + proposal[:-1]])  # [1, n+k]
    seq = ids.shape[1]
    feats = torch.cat([features_for(n)["hidden_states"], torch.zeros(seq - n, 96, dtype=torch.float64)])[None]
    cache, mask = TTTCache(), causal_mask(None, seq)
    hidden, step_ids, positions = draft.fuse(feats), shift_left(ids), torch.arange(seq)[None]
    unrolled = []
    with torch.no_grad():
        for j in range(k):
            hidden, logits = draft.step(shift_left(step_ids, j), hidden, positions + j, cache, mask)
            torch.testing.assert_close(logits[0, n - 1], logits_seen[j], rtol=1e-10, atol=1e-10)
            unrolled.append(int(draft.to_target_ids(logits[0, n - 1].argmax())))
    assert unrolled == proposal


def test_no_feature_yet_means_no_proposal() -> None:
    strategy, draft, _ = random_case()
    assert strategy.propose(draft, None, [7], {"hidden_states": torch.zeros(0, 96)}, 3) == []


# ------------------------------------------------------------------ a draft that copies its target

V, H = 16, 64
DRAFT_VOCAB = [1, 3, 4, 6, 9, 11, 12, 14]


def counting_target(seed: int = 0) -> torch.Tensor:
    """Target rule: next = argmax_y W[y] . counts(tokens so far); only draft-vocab rows can win."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.zeros(V, V, dtype=torch.float64)
    weights[DRAFT_VOCAB] = 1 + torch.rand(len(DRAFT_VOCAB), V, generator=gen, dtype=torch.float64)
    return weights


def target_next(weights: torch.Tensor, ids: list[int]) -> int:
    counts = torch.bincount(torch.tensor(ids), minlength=V).double()
    return int((weights @ counts).argmax())


def target_features(ids: list[int]) -> dict[str, torch.Tensor]:
    """a_t = [0 ; 0 ; counts(x_0..x_t)]: the target's state after each token."""
    counts = torch.zeros(len(ids), H, dtype=torch.float64)
    for t in range(len(ids)):
        counts[t, :V] = torch.bincount(torch.tensor(ids[: t + 1]), minlength=V).double()
    return {"hidden_states": torch.cat([torch.zeros(len(ids), 2 * H, dtype=torch.float64), counts], dim=1)}


def copying_draft(weights: torch.Tensor):
    """Each step adds onehot(its input token) to the incoming hidden: attention picks the key of
    the same token (one-hot q/k in the first half of head 0, orthogonal under RoPE), the MLP is
    off, fc passes the counts through. So the hidden is the running token count, like the target's."""
    strategy, draft, info = build({"draft_vocab_size": len(DRAFT_VOCAB)}, counts=dict.fromkeys(DRAFT_VOCAB, 5),
                                  hidden=H, heads=2, kv_heads=2, vocab=V, intermediate=16)
    eye = torch.eye(V, dtype=torch.float64)
    with torch.no_grad():
        for p in draft.parameters():
            p.zero_()
        draft.embed_tokens.weight[:, :V] = eye  # RMSNorm makes it 8 * onehot
        draft.fc.weight[:, 2 * H:] = torch.eye(H, dtype=torch.float64)
        for norm in (draft.midlayer.input_layernorm, draft.midlayer.hidden_norm,
                     draft.midlayer.post_attention_layernorm, draft.norm):
            norm.weight.fill_(1.0)
        attn = draft.midlayer.self_attn
        attn.q_proj.weight[:V, :V] = 8 * eye  # scores 64*8/sqrt(32) ~ 90 for the same token, 0 otherwise
        attn.k_proj.weight[:V, :V] = eye
        attn.v_proj.weight[:V, :V] = eye
        attn.o_proj.weight[:V, :V] = eye / 8  # attention output = onehot(token)
        draft.lm_head.weight[:, :V] = weights[DRAFT_VOCAB]
    return strategy, draft, info


def test_a_draft_that_copies_the_target_proposes_the_targets_greedy_tokens() -> None:
    weights = counting_target()
    strategy, draft, _ = copying_draft(weights)
    assert draft.d2t.tolist() != [0] * len(DRAFT_VOCAB), "the case should exercise the id mapping"
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, V, (6,), generator=gen).tolist()
    accepted = [*prompt, target_next(weights, prompt)]
    state = strategy.begin_decode(draft, prompt, target_features(prompt))
    for accept in (2, 1, 3):
        greedy = []
        for _ in range(5):
            greedy.append(target_next(weights, accepted + greedy))
        proposal = strategy.propose(draft, state, accepted, target_features(accepted[:-1]), 5)
        assert proposal == greedy
        accepted += [*greedy[:accept], target_next(weights, accepted + greedy[:accept])]
