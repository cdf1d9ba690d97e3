"""Domino's label layout and its GRU correction: which slots, which earlier tokens."""

from __future__ import annotations

import math

import pytest
import torch

from specforge.testing.synthetic import tiny_target_info
from specforge_domino.options import DominoOptions
from specforge_domino.strategy import DominoStrategy

IDS = torch.arange(10, 20)[None]  # x_t = 10 + t, S = 10


def _targets(shift_label, mask=None):
    strategy = DominoStrategy(DominoOptions(block_size=4, shift_label=shift_label))
    batch = {"input_ids": IDS, "loss_mask": torch.ones(1, 10) if mask is None else mask}
    cfg = type("Cfg", (), {"block_size": 4, "shift_label": shift_label})
    return strategy.block_targets(batch, torch.tensor([[3]]), torch.tensor([[True]]), cfg)


def test_shift_label_predicts_the_next_token_from_every_slot():
    t = _targets(True)
    assert t.labels.tolist() == [[[14, 15, 16, 17]]]
    expected = [1.0, math.exp(-1 / 7), math.exp(-2 / 7), math.exp(-3 / 7)]
    assert torch.allclose(t.weights[0, 0], torch.tensor(expected))
    assert t.prev_ids.tolist() == [[[13, 14, 15, 16]]]  # the GRU reads x_p .. x_{p+bs-1}


def test_without_shift_labels_are_dflash_same_position_labels():
    t = _targets(False)
    assert t.labels.tolist() == [[[13, 14, 15, 16]]]
    expected = [0.0, 1.0, math.exp(-1 / 7), math.exp(-2 / 7)]
    assert torch.allclose(t.weights[0, 0], torch.tensor(expected))


def test_shifted_labels_past_the_sequence_or_unsupervised_weigh_nothing():
    mask = torch.ones(1, 10)
    mask[0, 5] = 0
    t = _targets(True, mask)
    assert t.binary.tolist() == [[[1, 0, 1, 1]]]  # slot 1's label x_5 is unsupervised
    strategy = DominoStrategy(DominoOptions(block_size=4))
    cfg = type("Cfg", (), {"block_size": 4, "shift_label": True})
    end = strategy.block_targets({"input_ids": IDS, "loss_mask": torch.ones(1, 10)}, torch.tensor([[7]]),
                            torch.tensor([[True]]), cfg)
    assert end.binary.tolist() == [[[1, 1, 0, 0]]]  # labels x_8, x_9, then past S


def _model(shift_label, prefix, info=None):
    info = info or tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    opts = DominoOptions(block_size=5, shift_label=shift_label, pure_draft_prefix_len=prefix,
                         gru_hidden_dim=12, emb_dim=6)
    torch.manual_seed(0)
    model = DominoStrategy(opts).build_draft(info, None)
    with torch.no_grad():
        model.embed_proj[2].weight.normal_(0, 1.0)  # a visible correction
    return model


def _head_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(3, 5, 48, generator=gen, dtype=torch.float64)
    hidden = torch.randn(3, 5, 32, generator=gen, dtype=torch.float64)
    prev = torch.randint(0, 47, (3, 5), generator=gen)
    return base, hidden, prev


@pytest.mark.parametrize(("shift_label", "prefix", "first_corrected"), [(True, 1, 1), (False, 0, 1), (False, 1, 2),
                                                                         (True, 0, 0)])
def test_the_correction_starts_at_the_documented_slot(shift_label, prefix, first_corrected):
    model = _model(shift_label, prefix)
    base, hidden, prev = _head_inputs()
    final = model.correct(base, hidden, prev)
    changed = (final != base).any(-1).any(0).tolist()  # per slot
    assert changed == [j >= first_corrected for j in range(5)]


@pytest.mark.parametrize(("shift_label", "reads_own_slot"), [(True, True), (False, False)])
def test_a_slot_is_corrected_only_from_tokens_before_its_label(shift_label, reads_own_slot):
    model = _model(shift_label, 0)
    base, hidden, prev = _head_inputs()
    for i in range(5):
        other = prev.clone()
        other[:, i] = (other[:, i] + 1) % 47
        moved = (model.correct(base, hidden, other) != model.correct(base, hidden, prev)).any(-1).any(0)
        first = i if reads_own_slot else i + 1
        assert moved.tolist() == [j >= max(first, model.config.correction_start) for j in range(5)]


def test_a_zero_projection_leaves_the_base_logits():
    model = _model(True, 1)
    with torch.no_grad():
        model.embed_proj[2].weight.zero_()
    base, hidden, prev = _head_inputs()
    assert torch.equal(model.correct(base, hidden, prev), base)


def test_default_head_sizes_follow_the_shipped_ratio_to_the_hidden_size():
    info = tiny_target_info(hidden_size=64, vocab_size=48)
    cfg = DominoStrategy(DominoOptions()).draft_config(info)
    assert (cfg.gru_hidden_dim, cfg.emb_dim) == (16, 4)  # 4096 -> 1024 and 256 for Qwen3-8B
