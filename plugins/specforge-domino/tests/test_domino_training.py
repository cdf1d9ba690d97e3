"""Domino's loss: (1-λ)·CE(final) + λ·CE(base) with λ decaying over the run."""

from __future__ import annotations

import pytest
import torch

from specforge.contracts import StepContext
from specforge.registry import load_registry
from specforge.testing.synthetic import synthetic_samples, tiny_target_info
from specforge_domino.options import DominoOptions
from specforge_domino.schedule import lambda_base
from specforge_domino.strategy import DominoStrategy


@pytest.mark.parametrize(("step", "total", "start", "ratio", "expected"), [
    (0, 100, 1.0, 1.0, 1.0),
    (25, 100, 1.0, 1.0, 0.75),
    (50, 100, 1.0, 1.0, 0.5),
    (100, 100, 1.0, 1.0, 0.0),
    (150, 100, 1.0, 1.0, 0.0),
    (25, 100, 1.0, 0.5, 0.5),  # decays over half the run
    (60, 100, 1.0, 0.5, 0.0),
    (5, 10, 0.6, 1.0, 0.3),
    (3, 0, 1.0, 1.0, 0.0),  # unknown total: final logits alone
])
def test_lambda_decays_linearly_from_its_start_over_the_decay_window(step, total, start, ratio, expected):
    assert lambda_base(step, total, start, ratio) == pytest.approx(expected)


def _setup(lengths=(18, 11), **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    opts = DominoOptions(**{"block_size": 4, "num_anchors": 32, "gru_hidden_dim": 12, "emb_dim": 6, **options})
    strategy = DominoStrategy(opts)
    batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=lengths))
    torch.manual_seed(0)
    draft = strategy.build_draft(info, None)
    with torch.no_grad():
        draft.embed_proj[2].weight.normal_(0, 0.5)  # final and base logits clearly differ
    return strategy, draft, batch


@pytest.mark.parametrize("step", [0, 10, 15, 20])
def test_the_loss_mixes_final_and_base_cross_entropy_by_lambda(step):
    strategy, draft, batch = _setup()
    out = strategy.loss(draft, batch, StepContext(step=step, total_steps=20))
    lam = 1.0 - step / 20
    assert out.metrics["lambda_base"] == pytest.approx(lam)
    final, base = out.ratio_metrics["final_loss"][0], out.ratio_metrics["base_loss"][0]
    assert not torch.allclose(final, base)
    torch.testing.assert_close(out.terms[0], (1 - lam) * final + lam * base)
    torch.testing.assert_close(out.terms[1], out.ratio_metrics["final_loss"][1])


def test_gradients_reach_the_gru_and_the_projection_but_not_the_target_weights():
    strategy, draft, batch = _setup()
    out = strategy.loss(draft, batch, StepContext(step=5, total_steps=10))
    (out.terms[0] / out.terms[1]).backward()
    for name in ("prefix_gru.weight_ih_l0", "prefix_gru.weight_hh_l0", "embed_proj.0.weight",
                 "embed_proj.2.weight", "fc.weight", "layers.0.self_attn.q_proj.weight"):
        grad = draft.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert draft.embed_tokens.weight.grad is None and draft.lm_head.weight.grad is None


def test_loss_falls_on_a_fixed_batch_as_lambda_hands_over_to_the_final_logits():
    strategy, draft, batch = _setup()
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    final_losses = []
    for step in range(30):
        out = strategy.loss(draft, batch, StepContext(step=step, total_steps=30))
        opt.zero_grad()
        (out.terms[0] / out.terms[1]).backward()
        opt.step()
        num, den = out.ratio_metrics["final_loss"]
        final_losses.append(float(num / den))
    assert final_losses[-1] < 0.3 * final_losses[0], final_losses


def test_registry_finds_domino_and_its_options_extend_dflash():
    reg = load_registry().get("strategy", "domino")
    assert reg.plugin.distribution == "specforge-domino"
    assert reg.spec.load() is DominoStrategy
    names = {f for f in reg.spec.options.__dataclass_fields__}
    assert {"target_layer_ids", "block_size", "num_anchors", "gru_hidden_dim", "emb_dim", "shift_label",
            "pure_draft_prefix_len", "lambda_base_start", "decay_ratio"} <= names


def test_dflash_dpace_loss_is_refused_in_one_line_naming_the_key():
    from specforge.api import UserError
    from specforge_domino.options import DominoOptions
    from specforge_domino.strategy import DominoStrategy

    with pytest.raises(UserError, match=r"strategy\.loss=dpace .*domino"):
        DominoStrategy(DominoOptions(loss="dpace"))
