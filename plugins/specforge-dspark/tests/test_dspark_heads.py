"""The Markov heads and the confidence head against loop-by-loop float64 references."""

from __future__ import annotations

import pytest
import torch
from dspark_reference import markov_bias, sigmoid

from specforge.testing.synthetic import tiny_target_info
from specforge_dspark.options import DSparkOptions
from specforge_dspark.strategy import DSparkStrategy

INFO = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
HEADS = ["vanilla", "gated", "rnn"]


def _model(head_type, rank=6, **options):
    strategy = DSparkStrategy(DSparkOptions(block_size=5, markov_rank=rank, markov_head_type=head_type, **options))
    torch.manual_seed(0)
    model = strategy.build_draft(INFO, None)
    with torch.no_grad():  # weights well away from zero so every term of the formulas matters
        for name, p in model.named_parameters():
            if name.startswith(("markov_head.", "confidence_head.")):
                p.copy_(torch.randn_like(p) * 0.7)
    return model


def _weights(model):
    return {k: v.detach() for k, v in model.markov_head.state_dict().items()}


def _inputs(seed=0, M=3, bs=5):
    gen = torch.Generator().manual_seed(seed)
    prev = torch.randint(0, 48, (M, bs), generator=gen)
    hidden = torch.randn(M, bs, 32, generator=gen, dtype=torch.float64)
    base = torch.randn(M, bs, 48, generator=gen, dtype=torch.float64) * 3
    return prev, hidden, base


@pytest.mark.parametrize("head_type", HEADS)
def test_teacher_forced_bias_matches_the_formula_slot_by_slot(head_type):
    model = _model(head_type)
    prev, hidden, _ = _inputs()
    got = model.markov_head.block_bias(prev, hidden)  # [M, bs, V]
    for m in range(prev.shape[0]):
        want = markov_bias(head_type, _weights(model), prev[m].tolist(), hidden[m])
        torch.testing.assert_close(got[m], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("head_type", HEADS)
def test_the_bias_of_a_slot_depends_only_on_its_own_and_earlier_previous_tokens(head_type):
    model = _model(head_type)
    prev, hidden, _ = _inputs()
    ref = model.markov_head.block_bias(prev, hidden)
    for i in range(prev.shape[1]):
        other = prev.clone()
        other[:, i] = (other[:, i] + 1) % 48
        moved = (model.markov_head.block_bias(other, hidden) != ref).any(-1).any(0).tolist()
        # vanilla and gated read only slot i's own previous token; the rnn carries it forward
        assert moved == [j == i or (head_type == "rnn" and j > i) for j in range(prev.shape[1])]


@pytest.mark.parametrize("head_type", HEADS)
def test_greedy_decoding_feeds_each_pick_to_the_next_slot(head_type):
    model = _model(head_type)
    _, hidden, base = _inputs(seed=1)
    first = torch.tensor([5, 17, 40])
    tokens = model.markov_head.greedy(base, hidden, first)  # [M, bs]
    for m in range(3):
        prev, want = [int(first[m])], []
        for k in range(5):
            # the reference bias of slot k given the tokens chosen so far (only the last k+1 matter)
            bias = markov_bias(head_type, _weights(model), prev, hidden[m, : k + 1])[k]
            want.append(int((base[m, k] + bias).argmax()))
            prev.append(want[-1])
        assert tokens[m].tolist() == want
    # and teacher forcing on those picks gives back the same argmaxes
    forced = torch.cat([first[:, None], tokens[:, :-1]], dim=1)
    logits = model.slot_logits(base, hidden, forced)
    assert torch.equal(logits.argmax(-1), tokens)


@pytest.mark.parametrize("with_markov", [True, False])
def test_the_confidence_head_reads_the_hidden_state_and_optionally_the_markov_embedding(with_markov):
    model = _model("vanilla", confidence_head_with_markov=with_markov)
    prev, hidden, _ = _inputs()
    with torch.no_grad():
        got = model.confidence(hidden, prev)  # [M, bs]
    W = model.confidence_head.proj.weight.detach()[0]
    b = model.confidence_head.proj.bias.detach()[0]
    W1 = model.markov_head.markov_w1.weight.detach()
    for m in range(3):
        for k in range(5):
            x = torch.cat([hidden[m, k], W1[prev[m, k]]]) if with_markov else hidden[m, k]
            torch.testing.assert_close(got[m, k], W @ x + b, rtol=1e-12, atol=1e-12)
    assert model.confidence_head.proj.weight.shape == (1, 32 + (6 if with_markov else 0))
    assert float(sigmoid(got).min()) > 0 and float(sigmoid(got).max()) < 1


def test_without_a_markov_rank_the_draft_logits_are_the_base_logits():
    model = _model("vanilla", rank=0, confidence_head_with_markov=False)
    prev, hidden, base = _inputs()
    assert model.markov_head is None
    assert torch.equal(model.slot_logits(base, hidden, prev), base)


def test_head_weights_start_small_and_biases_at_zero():
    strategy = DSparkStrategy(DSparkOptions(block_size=5, markov_rank=6, markov_head_type="rnn"))
    torch.manual_seed(0)
    model = strategy.build_draft(INFO, None).requires_grad_(False)
    assert float(model.markov_head.markov_w1.weight.std()) == pytest.approx(0.02, rel=0.2)
    assert float(model.markov_head.joint_proj.weight.std()) == pytest.approx(0.02, rel=0.2)
    assert torch.count_nonzero(model.markov_head.joint_proj.bias) == 0
    assert torch.count_nonzero(model.confidence_head.proj.bias) == 0
