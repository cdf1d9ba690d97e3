"""The teacher shift on a hand-built S=6 example: which token, feature, RoPE position and target
each position uses at each TTT step."""

from __future__ import annotations

import math

import torch
from eagle3_tiny import build

from specforge.contracts import StepContext
from specforge_eagle3.teacher import build_teacher

S = 6
DRAFT_IDS = [0, 4, 5, 6, 8, 12]  # the draft vocabulary (target ids)


def hand_built():
    """Target head maps hidden onehot(j) to token 3+j; h_t = 5*onehot(t); tokens 10..15."""
    strategy, draft, _ = build({"ttt_length": 3, "draft_vocab_size": 6},
                               counts={i: 9 for i in DRAFT_IDS}, hidden=8, heads=2, kv_heads=1, vocab=20)
    head = torch.zeros(20, 8, dtype=torch.float64)
    for j in range(8):
        head[3 + j, j] = 1.0
    with torch.no_grad():
        draft.target_head.weight.copy_(head)
    batch = {
        "input_ids": torch.arange(10, 16)[None],
        "loss_mask": torch.tensor([[0, 1, 1, 1, 1, 1]]),
        "attention_mask": torch.ones(1, S, dtype=torch.long),
        "hidden_states": torch.arange(S * 24, dtype=torch.float64).reshape(1, S, 24),
        "last_hidden": 5.0 * torch.eye(S, 8, dtype=torch.float64)[None],
    }
    return strategy, draft, batch


def test_position_t_is_taught_the_target_distribution_given_h_t_plus_1() -> None:
    _, draft, batch = hand_built()
    teacher = build_teacher(batch["last_hidden"], batch["loss_mask"], batch["attention_mask"],
                            draft.target_head.weight, draft.t2d, 3)
    step0 = teacher.step(0)
    # h_{t+1} = 5*onehot(t+1) -> argmax token 3+(t+1); the last position sees a zero hidden
    assert step0.target_ids[0].tolist() == [4, 5, 6, 7, 8, 0]
    # loss mask is not shifted, the last position has no next hidden, token 7 is not in the draft vocab
    assert step0.loss_mask[0].tolist() == [0, 1, 1, 1, 1, 0]
    assert step0.position_mask[0].tolist() == [0, 1, 1, 0, 1, 0]
    # renormalised over the draft vocab: logit 5 on target id 5 (draft id 2), 0 on the other five
    big = math.exp(5.0)
    expected = torch.tensor([1, 1, big, 1, 1, 1], dtype=torch.float64) / (big + 5)
    torch.testing.assert_close(step0.probs[0, 1].double(), expected, rtol=1e-6, atol=1e-7)


def test_ttt_step_k_reads_the_teacher_k_positions_later() -> None:
    _, draft, batch = hand_built()
    teacher = build_teacher(batch["last_hidden"], batch["loss_mask"], batch["attention_mask"],
                            draft.target_head.weight, draft.t2d, 3)
    step2 = teacher.step(2)
    assert step2.target_ids[0].tolist() == [6, 7, 8, 0, 0, 0]
    assert step2.loss_mask[0].tolist() == [1, 1, 1, 0, 0, 0]
    assert step2.position_mask[0].tolist() == [1, 0, 1, 0, 0, 0]


def test_step_k_embeds_token_t_plus_k_plus_1_fuses_feature_t_at_rope_position_t_plus_k() -> None:
    strategy, draft, batch = hand_built()
    seen: dict[str, list[torch.Tensor]] = {"ids": [], "features": [], "positions": []}
    hooks = [
        draft.embed_tokens.register_forward_hook(lambda m, a, o: seen["ids"].append(a[0].clone())),
        draft.fc.register_forward_hook(lambda m, a, o: seen["features"].append(a[0].clone())),
        draft.rotary.register_forward_hook(lambda m, a, o: seen["positions"].append(a[0].clone())),
    ]
    strategy.loss(draft, batch, StepContext(step=0, total_steps=1))
    for h in hooks:
        h.remove()
    assert [t[0].tolist() for t in seen["ids"]] == [[11, 12, 13, 14, 15, 0], [12, 13, 14, 15, 0, 0],
                                                    [13, 14, 15, 0, 0, 0]]
    assert len(seen["features"]) == 1 and torch.equal(seen["features"][0], batch["hidden_states"])
    assert [t[0].tolist() for t in seen["positions"]] == [[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6],
                                                          [2, 3, 4, 5, 6, 7]]
