"""Training behaviour: the loss falls on a fixed batch, only trainable weights learn, collate pads,
and the TTT unroll never builds a [B, heads, S, S*k] tensor."""

from __future__ import annotations

import pytest
import torch
from eagle3_tiny import build, counts_of, make_info, make_samples, make_stats
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from specforge.contracts import StepContext
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy


def test_collate_right_pads_features_and_marks_real_tokens() -> None:
    info = make_info()
    samples = make_samples(info, [5, 3])
    batch = Eagle3Strategy().collate(samples)
    assert batch["input_ids"].shape == (2, 5) and batch["input_ids"].dtype == torch.int64
    assert batch["hidden_states"].shape == (2, 5, 3 * info.hidden_size)
    assert batch["last_hidden"].shape == (2, 5, info.hidden_size)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["loss_mask"][1].tolist() == [0, 0, 1, 0, 0]
    assert torch.equal(batch["hidden_states"][1, :3], samples[1]["hidden_states"])
    assert not batch["hidden_states"][1, 3:].any()


def test_collate_names_a_missing_feature() -> None:
    sample = make_samples(make_info(), [4])[0]
    del sample["last_hidden"]
    with pytest.raises(ValueError, match="last_hidden"):
        Eagle3Strategy().collate([sample])


def test_loss_falls_over_30_adamw_steps_on_a_fixed_batch() -> None:
    info = make_info(head_scale=6.0)  # a sharp teacher: its entropy (the loss floor) is low
    samples = make_samples(info, [12, 9, 10], seed=1)
    strategy = Eagle3Strategy(Eagle3Options(ttt_length=3, draft_vocab_size=32))
    torch.manual_seed(0)
    draft = strategy.build_draft(info, make_stats(counts_of(samples)))
    batch = strategy.collate(samples)
    params = [p for p in draft.parameters() if p.requires_grad]
    frozen = {n: p.detach().clone() for n, p in draft.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    losses = []
    for step in range(30):
        opt.zero_grad()
        out = strategy.loss(draft, batch, StepContext(step=step, total_steps=30))
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(frozen) == {"embed_tokens.weight", "target_head.weight"}
    for name, value in frozen.items():
        assert torch.equal(dict(draft.named_parameters())[name], value), f"{name} changed"


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out


def test_forward_and_backward_stay_within_twice_the_diagonal_score_size() -> None:
    # Shapes where attention scores dominate: B*S*V, B*S*3H and B*S*I are all below B*h*S*(S+k).
    bsz, heads, seq, ttt = 2, 4, 32, 7
    _, draft, info = build({"ttt_length": ttt, "draft_vocab_size": 48}, hidden=32, heads=heads,
                           kv_heads=2, vocab=64, intermediate=64)
    strategy = Eagle3Strategy(Eagle3Options(ttt_length=ttt))
    batch = strategy.collate(make_samples(info, [seq] * bsz))
    with LargestTensor() as tracker:
        strategy.loss(draft, batch, StepContext(step=0, total_steps=1)).loss.backward()
    assert any("softmax_backward" in op for op in tracker.ops), "backward ops must be tracked too"
    diagonal_scores = bsz * heads * seq * (seq + ttt)  # step-0 scores plus k diagonal scores
    # c = 2: the concatenated scores (and their softmax) are exactly 1x this; 2x leaves room for one
    # wider temporary, while a concatenated [B, h, S, S*k] cache score is k*S/(S+k) = 5.7x here.
    bound = 2 * diagonal_scores
    assert bound < bsz * heads * seq * seq * ttt
    assert any("scaled_dot_product" in op for op in tracker.ops), "the tracker should see the attention kernel"
    assert tracker.largest <= bound, f"largest tensor has {tracker.largest} elements, bound {bound}"
