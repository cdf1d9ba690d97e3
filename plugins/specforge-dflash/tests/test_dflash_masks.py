"""Anchors, noise blocks and attention visibility match the facts position by position."""

from __future__ import annotations

import pytest
import torch

from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors
from specforge_dflash.mask import block_visibility, context_visibility, flex_mask_mod


def reference_visibility(anchors, keep, S, bs, window=None):
    """Dense [B, N·bs, S + N·bs] visibility written straight from the rules, one pair at a time."""
    B, N = len(anchors), len(anchors[0])
    out = torch.zeros(B, N * bs, S + N * bs, dtype=torch.bool)
    for b in range(B):
        for n in range(N):
            if not keep[b][n]:
                continue
            a = anchors[b][n]
            for j in range(bs):
                q = n * bs + j
                for t in range(S):
                    out[b, q, t] = t < a and (window is None or t >= a + j - (window - 1))
                for i in range(bs):
                    out[b, q, S + n * bs + i] = window is None or i <= j
    return out


def parts_to_dense(ctx, blk):
    B, N, bs, S = ctx.shape
    dense = torch.zeros(B, N * bs, S + N * bs, dtype=torch.bool)
    dense[:, :, :S] = ctx.reshape(B, N * bs, S)
    for n in range(N):
        dense[:, n * bs:(n + 1) * bs, S + n * bs:S + (n + 1) * bs] = blk[:, n]
    return dense


CASES = [
    # anchors, keep, S, bs, window
    ([[3]], [[True]], 10, 4, None),  # the facts' worked example
    ([[0, 4, 7], [2, 5, 0]], [[True, True, True], [True, True, False]], 9, 3, None),  # unkept block
    ([[1, 5, 8], [0, 3, 6]], [[True, True, True], [True, True, True]], 10, 4, 3),  # sliding, anchors near the end
    ([[6, 2]], [[True, True]], 9, 5, 2),
]


@pytest.mark.parametrize(("anchors", "keep", "S", "bs", "window"), CASES)
def test_context_and_block_masks_match_the_position_by_position_rules(anchors, keep, S, bs, window):
    a, k = torch.tensor(anchors), torch.tensor(keep)
    ctx = context_visibility(a, k, S, bs, window)
    blk = block_visibility(k, bs, causal=window is not None)
    assert ctx.shape == (*a.shape, bs, S) and blk.shape == (*a.shape, bs, bs)
    assert torch.equal(parts_to_dense(ctx, blk), reference_visibility(anchors, keep, S, bs, window))


@pytest.mark.parametrize(("anchors", "keep", "S", "bs", "window"), CASES)
def test_flex_predicate_matches_the_position_by_position_rules(anchors, keep, S, bs, window):
    a, k = torch.tensor(anchors), torch.tensor(keep)
    B, N = a.shape
    mod = flex_mask_mod(a, k, S, bs, window)
    b = torch.arange(B)[:, None, None]
    q = torch.arange(N * bs)[None, :, None]
    kv = torch.arange(S + N * bs)[None, None, :]
    got = mod(b, torch.zeros_like(b), q, kv)
    assert torch.equal(got, reference_visibility(anchors, keep, S, bs, window))


def test_worked_example_block_sees_context_before_the_anchor_and_its_own_slots():
    ctx = context_visibility(torch.tensor([[3]]), torch.tensor([[True]]), 10, 4)
    for j in range(4):
        assert ctx[0, 0, j].nonzero().flatten().tolist() == [0, 1, 2]


def _mask(rows):
    return torch.tensor(rows, dtype=torch.long)


def test_anchors_sit_only_where_a_token_and_its_successor_are_supervised():
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(4, 40, generator=gen) > 0.4).long()
    anchors, keep = sample_anchors(mask, 6, seeds=[1, 2, 3, 4])
    for b in range(4):
        kept = anchors[b][keep[b]].tolist()
        assert all(mask[b, p] == 1 and mask[b, p + 1] == 1 for p in kept)
        assert kept == sorted(set(kept))
        valid = sum(int(mask[b, p] and mask[b, p + 1]) for p in range(39))
        assert len(kept) == min(6, valid)


def test_samples_with_fewer_candidates_take_them_all_and_pad_with_unkept_blocks():
    mask = _mask([[0, 1, 1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    anchors, keep = sample_anchors(mask, 10, seeds=[5, 6])
    assert anchors.shape == (2, 7)  # width = the most candidates in the batch
    assert anchors[0].tolist() == [1, 2, 5, 0, 0, 0, 0]
    assert keep[0].tolist() == [True, True, True, False, False, False, False]
    assert anchors[1].tolist() == list(range(7)) and bool(keep[1].all())


def test_the_anchor_draw_is_fixed_by_sample_step_and_micro_step():
    mask = torch.ones(1, 200, dtype=torch.long)
    first = sample_anchors(mask, 8, [anchor_seed(123, 7, 1)])[0]
    again = sample_anchors(mask, 8, [anchor_seed(123, 7, 1)])[0]
    later = sample_anchors(mask, 8, [anchor_seed(123, 8, 1)])[0]
    other = sample_anchors(mask, 8, [anchor_seed(124, 7, 1)])[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, later) and not torch.equal(first, other)


def test_a_batch_without_two_consecutive_loss_tokens_is_refused():
    with pytest.raises(ValueError, match="two consecutive loss-mask tokens"):
        sample_anchors(_mask([[1, 0, 1, 0], [0, 0, 0, 1]]), 4, seeds=[0, 1])


def test_noise_blocks_start_with_the_anchor_token_then_mask_tokens():
    ids = torch.tensor([[10, 11, 12, 13, 14, 15]])
    blocks = noise_blocks(ids, torch.tensor([[1, 4, 0]]), torch.tensor([[True, True, False]]), 3, 99)
    assert blocks.tolist() == [[11, 99, 99, 14, 99, 99, 99, 99, 99]]
