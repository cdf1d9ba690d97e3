"""The strategy around the draft: options, mask token resolution, what the loss may and may not
depend on, checkpoints, and learning to draft several tokens in parallel."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from peagle_tiny import build, make_info, make_samples, make_stats
from specforge_peagle.options import PeagleOptions
from specforge_peagle.strategy import PeagleStrategy

from specforge.api import ConfigError, StepContext, UserError

CTX = StepContext(step=4, total_steps=10)


def test_options_check_the_three_aux_layers_and_the_target_range() -> None:
    with pytest.raises(ConfigError, match=r"strategy\.aux_layer_ids needs exactly 3"):
        PeagleOptions(aux_layer_ids=(1, 2))
    info = make_info()
    assert PeagleStrategy().feature_request(info).layers == (1, 3, 4)  # EAGLE3's [1, L//2-1, L-4]
    assert PeagleStrategy().feature_request(info).last_hidden
    with pytest.raises(UserError, match=r"out of range .* --set strategy.aux_layer_ids=\[1,3,4\]"):
        PeagleStrategy(PeagleOptions(aux_layer_ids=(1, 2, 8))).feature_request(info)


@pytest.mark.parametrize(("tokens", "option", "expected"), [
    ({"mask": 39}, None, 39),  # the tokenizer's mask token
    ({"mask": None, "tokenizer_size": 33}, None, 33),  # else the first unused embedding row
    ({"mask": None}, None, 0),  # else pad
    ({"mask": 39}, 17, 17),  # the option wins
])
def test_the_mask_token_is_resolved_in_the_documented_order_and_drafted_with(tokens, option, expected) -> None:
    info = make_info(**tokens)
    strategy = PeagleStrategy(PeagleOptions(mask_token_id=option, num_draft_layers=1, num_depths=2))
    assert strategy.plan_notes(info)[0].startswith(f"mask token {expected} (")
    draft = strategy.build_draft(info, make_stats(make_samples(info, [6])))
    assert draft.config.mask_token_id == expected
    with pytest.raises(UserError, match=r"strategy\.mask_token_id"):
        PeagleStrategy(PeagleOptions(mask_token_id=40)).plan_notes(info)


def test_padding_and_unsupervised_teachers_do_not_change_the_loss() -> None:
    strategy, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 3}, lengths=(9, 6))
    batch = strategy.collate(samples)
    expected = strategy.loss(draft, batch, CTX).loss
    noisy = {k: v.clone() for k, v in batch.items()}
    gen = torch.Generator().manual_seed(5)
    for name in ("hidden_states", "last_hidden"):
        noisy[name][1, 6:] = torch.randn(noisy[name][1, 6:].shape, generator=gen, dtype=torch.float64)
    noisy["input_ids"][1, 6:] = 7
    noisy["last_hidden"][:, :2] += 3.0  # teachers of the two prompt positions (loss mask 0) and position 0 (unused)
    torch.testing.assert_close(strategy.loss(draft, noisy, CTX).loss, expected, rtol=0, atol=0)
    longer = strategy.collate(samples + make_samples(make_info(), [14], seed=9))
    alone = strategy.collate(samples[:1])
    # a sample's elements do not depend on its batch: the per-depth counts of [s0] + [s1] are those of [s0, s1]
    both = strategy.loss(draft, batch, CTX).ratio_metrics["acc"][1]
    parts = sum(strategy.loss(draft, strategy.collate([s]), CTX).ratio_metrics["acc"][1] for s in samples)
    assert float(both) == float(parts)
    assert strategy.loss(draft, longer, CTX).loss != expected and strategy.loss(draft, alone, CTX).loss != expected
    changed = {k: v.clone() for k, v in batch.items()}
    changed["last_hidden"][0, 5] += 3.0  # a supervised position's teacher: the loss must see it
    assert strategy.loss(draft, changed, CTX).loss != expected


def test_extra_state_restores_the_vocabulary_and_refuses_another_mask_token() -> None:
    strategy, draft, info, samples = build({"num_draft_layers": 1, "num_depths": 2, "draft_vocab_size": 12})
    state = strategy.extra_state(draft)
    other = strategy.build_draft(info, make_stats(make_samples(info, [20], seed=7)))
    assert not torch.equal(other.d2t, draft.d2t)
    strategy.load_extra_state(other, state)
    assert torch.equal(other.d2t, draft.d2t) and torch.equal(other.t2d, draft.t2d)
    elsewhere = PeagleStrategy(dataclasses.replace(strategy.options, mask_token_id=5))
    with pytest.raises(UserError, match=r"mask token 39.*--set strategy\.mask_token_id=39"):
        elsewhere.load_extra_state(elsewhere.build_draft(info, make_stats(samples)), state)


def test_overfitting_one_sample_makes_every_depth_draft_the_targets_greedy_tokens() -> None:
    """Trained on one sample, the parallel draft proposes, after any prefix x_0..x_n of it, the target's
    greedy choices after x_n, x_{n+1}, x_{n+2}: the first from real features, the rest from mask positions."""
    strategy, draft, info, samples = build({"num_draft_layers": 2, "num_depths": 3, "down_sample_ratio": 1.0},
                                           lengths=(14,), randomise=False, hidden=32, head_scale=6.0)
    draft = draft.float()
    sample = {k: (v.float() if v.is_floating_point() else v) for k, v in samples[0].items()}
    sample["loss_mask"][:] = 1
    batch = strategy.collate([sample])
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=3e-3)
    for step in range(150):
        opt.zero_grad()
        strategy.loss(draft, batch, StepContext(step=step, total_steps=150)).loss.backward()
        opt.step()
    out = strategy.loss(draft, batch, CTX)
    for d in range(3):
        hits, counts = out.ratio_metrics[f"acc_{d}"]
        assert float(counts) > 0 and float(hits) == float(counts), (d, float(hits), float(counts))
    head = info.lm_head_weight.float()
    greedy = [int((head @ sample["last_hidden"][t]).argmax()) for t in range(14)]  # the target's choice after x_t
    ids = sample["input_ids"].tolist()
    for n in range(2, 10):
        proposal = strategy.propose(draft, None, ids[:n + 1], {"hidden_states": sample["hidden_states"][:n]}, 3)
        assert proposal == greedy[n:n + 3], n
