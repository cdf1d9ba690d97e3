"""Memory of a training step, exactly (tracked per op, device independent): no tensor of S·S
elements is created or kept for backward, and with a large vocabulary neither the [S, V] teacher
logits nor a step's [S, Vd] draft logits ever exist whole."""

from __future__ import annotations

import pytest
import torch
from eagle3_tiny import build, make_samples
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from specforge.contracts import StepContext
from specforge_eagle3 import loss as loss_module
from specforge_eagle3 import teacher as teacher_module


class Tracker(TorchDispatchMode):
    """Every floating tensor an op allocates (forward and backward) and every tensor saved for backward."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[int, ...]] = []
        self.saved: list[tuple[int, ...]] = []
        self.ops: set[str] = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.saved.append(tuple(t.shape))
        return t

    def __enter__(self):
        self._hooks.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        return self._hooks.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for leaf in tree_leaves(out):  # new storage only: views and in-place results allocate nothing
            if (isinstance(leaf, torch.Tensor) and leaf.is_floating_point()
                    and leaf.untyped_storage().data_ptr() not in inputs):
                self.created.append(tuple(leaf.shape))
        return out


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def train_step(strategy, draft, batch) -> Tracker:
    with Tracker() as tracker:
        strategy.loss(draft, batch, StepContext(step=0, total_steps=1)).loss.backward()
    return tracker


def left_padded(batch: dict) -> dict:
    """The same samples moved to the right end of each row (padding first): the key-mask path."""
    out = {}
    lengths = batch["attention_mask"].sum(1).tolist()
    for name, value in batch.items():
        rows = [torch.roll(row, int(row.shape[0] - n), dims=0) for row, n in zip(value, lengths)]
        out[name] = torch.stack(rows)
    return out


@pytest.mark.parametrize("layout", ["right-padded", "left-padded"])
def test_a_step_creates_and_saves_no_tensor_of_s_squared_elements(layout) -> None:
    # Shapes where S² exceeds every linear tensor (B·S·3H, B·S·2I, B·h·S·Dp, B·S·V).
    seq, ttt = 301, 7
    strategy, draft, info = build({"ttt_length": ttt, "draft_vocab_size": 48}, hidden=32, heads=4,
                                  kv_heads=2, vocab=64, intermediate=64)
    batch = strategy.collate(make_samples(info, [seq, 200]))
    if layout == "left-padded":
        batch = left_padded(batch)
    tracker = train_step(strategy, draft, batch)
    assert any("scaled_dot_product" in op and "backward" in op for op in tracker.ops), \
        "the fused attention kernel and its backward should run"
    limit = seq * seq
    largest_created = max(tracker.created, key=numel)
    largest_saved = max(tracker.saved, key=numel)
    assert numel(largest_created) < limit, f"created {largest_created}, S*S = {limit}"
    assert numel(largest_saved) < limit, f"saved for backward {largest_saved}, S*S = {limit}"


@pytest.mark.parametrize("grad_in_forward", [True, False])
def test_a_large_vocabulary_step_holds_neither_full_logits_nor_a_steps_draft_logits(
        monkeypatch, grad_in_forward) -> None:
    bsz, seq, ttt, vocab, vd = 1, 64, 7, 4096, 1024
    monkeypatch.setattr(teacher_module, "CHUNK_ELEMENTS", 8 * vocab)  # 8 positions of [V] logits
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 8 * vd)  # 8 positions of [Vd] logits
    monkeypatch.setattr(loss_module, "GRAD_IN_FORWARD_ELEMENTS", 2**30 if grad_in_forward else 0)
    strategy, draft, info = build({"ttt_length": ttt, "draft_vocab_size": vd}, hidden=32, heads=4,
                                  kv_heads=2, vocab=vocab, intermediate=64)
    batch = strategy.collate(make_samples(info, [seq] * bsz))
    tracker = train_step(strategy, draft, batch)
    big = {s for s in tracker.created if numel(s) > bsz * seq * vd // 2}  # above 8-position chunks
    # the only tensor near [S, Vd] is the compact teacher itself: [B, S + T, Vd], not [B, S, V]
    assert big == {(bsz, seq + ttt, vd)}, big
    if grad_in_forward:  # backward keeps no step's logits, only [Vd, H] weight-gradient buffers
        assert max(numel(s) for s in tracker.saved) < bsz * seq * vd
