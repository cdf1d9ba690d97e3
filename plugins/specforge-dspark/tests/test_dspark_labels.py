"""DSpark's block layout: next-token labels, previous tokens, the cumulative-product mask, the teacher."""

from __future__ import annotations

import math

import pytest
import torch
from dspark_reference import block_layout

from specforge_dspark.labels import dspark_targets

IDS = torch.arange(10, 22)[None]  # x_t = 10 + t, S = 12


def test_slot_k_predicts_the_token_after_its_own_and_reads_its_own_as_previous():
    t = dspark_targets(IDS, torch.ones(1, 12), torch.tensor([[3]]), torch.tensor([[True]]), 4, gamma=None)
    assert t.labels.tolist() == [[[14, 15, 16, 17]]]
    assert t.prev_ids.tolist() == [[[13, 14, 15, 16]]]  # the anchor, then each label before
    assert t.binary.tolist() == [[[1, 1, 1, 1]]]  # slot 0 is supervised too


def test_a_label_outside_the_supervised_text_ends_the_block_even_if_later_ones_are_supervised():
    mask = torch.ones(1, 12)
    mask[0, 6] = 0  # the label of slot 2 for an anchor at 3
    t = dspark_targets(IDS, mask, torch.tensor([[3]]), torch.tensor([[True]]), 5, gamma=None)
    assert t.binary.tolist() == [[[1, 1, 0, 0, 0]]]  # not [1, 1, 0, 1, 1]: contiguous prefix only


def test_labels_past_the_sequence_and_unkept_blocks_weigh_nothing():
    t = dspark_targets(IDS, torch.ones(1, 12), torch.tensor([[8, 0]]), torch.tensor([[True, False]]), 4,
                       gamma=None)
    assert t.binary.tolist() == [[[1, 1, 1, 0], [0, 0, 0, 0]]]  # labels x_9, x_10, x_11, then past S


def test_decay_starts_at_one_on_slot_zero():
    t = dspark_targets(IDS, torch.ones(1, 12), torch.tensor([[2]]), torch.tensor([[True]]), 4, gamma=3.0)
    expected = [math.exp(-k / 3.0) for k in range(4)]
    assert torch.allclose(t.weights[0, 0], torch.tensor(expected))


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_and_anchors_match_the_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    B, S, N, bs = 3, 15, 4, 5
    ids = torch.randint(0, 40, (B, S), generator=gen)
    mask = (torch.rand(B, S, generator=gen) > 0.3).long()
    anchors = torch.randint(0, S - 1, (B, N), generator=gen)
    keep = torch.rand(B, N, generator=gen) > 0.2
    t = dspark_targets(ids, mask, anchors, keep, bs, gamma=None)
    for b in range(B):
        for n in range(N):
            labels, prev, valid = block_layout(ids[b].tolist(), mask[b].tolist(), int(anchors[b, n]), bs)
            if not keep[b, n]:
                valid = [0.0] * bs
            assert t.binary[b, n].tolist() == valid
            kept = [k for k in range(bs) if valid[k]]
            assert [t.labels[b, n, k].item() for k in kept] == [labels[k] for k in kept]
            assert [t.prev_ids[b, n, k].item() for k in kept] == [prev[k] for k in kept]


def test_the_teacher_of_slot_k_is_the_target_state_at_the_slots_own_position():
    last = torch.arange(12, dtype=torch.float64)[None, :, None].expand(1, 12, 2)  # row t holds t
    t = dspark_targets(IDS, torch.ones(1, 12), torch.tensor([[3, 9]]), torch.tensor([[True, True]]), 4,
                       gamma=None, last_hidden=last)
    assert t.teacher_hidden[0, :, :, 0].tolist() == [[3, 4, 5, 6], [9, 10, 11, 11]]  # p+k, clamped at S-1
