"""DFlash labels are same-position with slot 0 unsupervised; weights decay exp(-(k-1)/γ)."""

from __future__ import annotations

import math

import torch

from specforge_dflash.labels import block_targets

IDS = torch.arange(10, 20)[None]  # x_t = 10 + t, S = 10


def test_worked_example_labels_and_weights():
    t = block_targets(IDS, torch.ones(1, 10), torch.tensor([[3]]), torch.tensor([[True]]), 4, gamma=7.0)
    assert t.labels.tolist() == [[[13, 14, 15, 16]]]
    expected = [0.0, 1.0, math.exp(-1 / 7), math.exp(-2 / 7)]
    assert torch.allclose(t.weights[0, 0], torch.tensor(expected))
    assert t.binary.tolist() == [[[0.0, 1.0, 1.0, 1.0]]]


def test_unsupervised_tokens_blocks_past_the_end_and_unkept_blocks_weigh_nothing():
    mask = torch.ones(1, 10)
    mask[0, 5] = 0
    t = block_targets(IDS, mask, torch.tensor([[3, 8, 0]]), torch.tensor([[True, True, False]]), 4, gamma=None)
    assert t.binary[0].tolist() == [[0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert t.labels[0, 1].tolist() == [18, 19, 19, 19]  # indices clamped to S-1, weight 0 past the end
    assert torch.equal(t.weights, t.binary)  # no γ: no decay


def test_previous_tokens_are_the_tokens_at_each_slot():
    t = block_targets(IDS, torch.ones(1, 10), torch.tensor([[3]]), torch.tensor([[True]]), 4, gamma=7.0)
    assert t.prev_ids.tolist() == [[[13, 14, 15, 16]]]
