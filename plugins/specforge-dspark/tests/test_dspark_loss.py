"""DSpark's loss against a naive token-pooled float64 reference: values, metrics, gradients, chunking."""

from __future__ import annotations

import pytest
import torch
from dspark_reference import block_layout, markov_bias, pooled_loss

from specforge.contracts import StepContext
from specforge.testing.synthetic import synthetic_samples, tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dspark.options import DSparkOptions
from specforge_dspark.strategy import DSparkStrategy

CTX = StepContext(step=0, total_steps=10)
INFO = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
ANCHORS = torch.tensor([[3, 7, 12, 14], [4, 6, 0, 0]])
KEEP = torch.tensor([[True, True, True, True], [True, True, False, False]])


def _setup(head_type="vanilla", lengths=(18, 11), **options):
    opts = DSparkOptions(**{"block_size": 4, "num_anchors": 32, "markov_rank": 6, "markov_head_type": head_type,
                            **options})
    strategy = DSparkStrategy(opts)
    samples = synthetic_samples(INFO, strategy.feature_request(INFO), lengths=lengths)
    batch = strategy.collate(samples)
    mask = batch["loss_mask"].clone()
    mask[0, 10] = 0  # a hole in sample 0's reply: blocks at 7 must stop before it
    batch["loss_mask"] = mask
    torch.manual_seed(0)
    draft = strategy.build_draft(INFO, None)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if name.startswith(("markov_head.", "confidence_head.")):
                p.copy_(torch.randn_like(p) * 0.5)
    return strategy, draft, batch


def _strategy_terms(strategy, draft, batch):
    cfg = draft.config
    targets = strategy.block_targets(batch, ANCHORS, KEEP, cfg)
    blocks = noise_blocks(batch["input_ids"], ANCHORS, KEEP, cfg.block_size, cfg.mask_token_id)
    out = draft(batch["hidden_states"], blocks, ANCHORS, KEEP, **strategy.model_inputs(targets))
    return strategy.reduce(out, targets, KEEP, CTX)


def _reference(strategy, draft, batch):
    """Every block slot on its own, from the draft's hidden states and its weights as plain tensors."""
    o, cfg = strategy.options, draft.config
    bs = cfg.block_size
    blocks_ids = noise_blocks(batch["input_ids"], ANCHORS, KEEP, bs, cfg.mask_token_id)
    h = draft.hidden(batch["hidden_states"], blocks_ids, ANCHORS, KEEP).view(2, ANCHORS.shape[1], bs, -1)
    lm_head = draft.lm_head.weight
    weights = dict(draft.markov_head.named_parameters()) if draft.markov_head is not None else None
    blocks = []
    for b in range(2):
        ids, mask = batch["input_ids"][b].tolist(), batch["loss_mask"][b].tolist()
        for n in range(ANCHORS.shape[1]):
            if not KEEP[b, n]:
                continue
            p = int(ANCHORS[b, n])
            labels, prev, valid = block_layout(ids, mask, p, bs)
            logits = h[b, n] @ lm_head.T  # [bs, V]
            if weights is not None:
                logits = logits + markov_bias(cfg.markov_head_type, weights, prev, h[b, n])
            teacher = torch.stack([batch["last_hidden"][b, min(p + k, len(ids) - 1)] for k in range(bs)]) @ lm_head.T
            conf = None
            if draft.confidence_head is not None:
                proj = draft.confidence_head.proj
                feats = [torch.cat([h[b, n, k], weights["markov_w1.weight"][prev[k]]])
                         if cfg.confidence_head_with_markov else h[b, n, k] for k in range(bs)]
                conf = torch.stack([proj.weight[0] @ f + proj.bias[0] for f in feats])
            blocks.append({"logits": logits, "teacher": teacher, "confidence": conf, "labels": labels,
                           "valid": valid})
    alpha = (o.ce_loss_alpha, o.l1_loss_alpha, o.confidence_loss_alpha if draft.confidence_head else 0.0)
    return pooled_loss(blocks, alpha, o.loss_decay_gamma)


@pytest.mark.parametrize("head_type", ["vanilla", "gated", "rnn"])
@pytest.mark.parametrize("gamma", [None, 3.0])
def test_loss_terms_equal_the_token_pooled_reference(head_type, gamma):
    strategy, draft, batch = _setup(head_type, loss_decay_gamma=gamma)
    out = _strategy_terms(strategy, draft, batch)
    ref = _reference(strategy, draft, batch)
    torch.testing.assert_close(out.terms[0], ref["num"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.terms[1], ref["den"], rtol=1e-12, atol=1e-12)
    num, den = out.ratio_metrics["tau_probabilistic"]
    assert float(num / den) == pytest.approx(ref["tau"], rel=1e-10)


@pytest.mark.parametrize("head_type", ["vanilla", "rnn"])
def test_gradients_equal_the_references_for_every_trainable_weight(head_type):
    strategy, draft, batch = _setup(head_type)
    out = _strategy_terms(strategy, draft, batch)
    (out.terms[0] / out.terms[1]).backward()
    got = {n: p.grad.clone() for n, p in draft.named_parameters() if p.requires_grad}
    draft.zero_grad()
    _reference(strategy, draft, batch)["loss"].backward()
    for name, p in draft.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(got[name], p.grad, rtol=1e-9, atol=1e-12, msg=name)
    for name in ("markov_head.markov_w1.weight", "markov_head.markov_w2.weight", "confidence_head.proj.weight",
                 "fc.weight", "layers.0.self_attn.q_proj.weight"):
        assert got[name].abs().sum() > 0, name
    assert draft.lm_head.weight.grad is None and draft.embed_tokens.weight.grad is None


def test_the_default_weights_are_the_documented_ones():
    o = DSparkOptions()
    assert (o.ce_loss_alpha, o.l1_loss_alpha, o.confidence_loss_alpha) == (0.1, 0.9, 1.0)
    assert o.confidence_head and o.block_size == 7 and o.loss_decay_gamma is None


def test_ce_only_skips_the_target_distribution():
    strategy, draft, batch = _setup(l1_loss_alpha=0.0, confidence_loss_alpha=0.0, confidence_head_with_markov=False)
    assert not strategy.feature_request(INFO).last_hidden and "last_hidden" not in batch
    assert draft.confidence_head is None
    out = _strategy_terms(strategy, draft, batch)
    assert "tau_probabilistic" not in out.ratio_metrics and "l1_loss" not in out.ratio_metrics
    batch["last_hidden"] = torch.zeros(*batch["input_ids"].shape, 32, dtype=torch.float64)  # the reference reads it
    ref = _reference(strategy, draft, batch)
    torch.testing.assert_close(out.terms[0], ref["num"], rtol=1e-10, atol=1e-12)


def test_chunked_objective_equals_one_pass_in_loss_metrics_and_gradients():
    strategy, draft, batch = _setup("rnn")
    results = []
    for chunk in (1, 1000):
        draft.loss_chunk_blocks = chunk
        draft.zero_grad()
        out = strategy.loss(draft, batch, CTX)
        (out.terms[0] / out.terms[1]).backward()
        results.append((out, [p.grad.clone() for p in draft.parameters() if p.requires_grad]))
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a.terms[0], b.terms[0], rtol=1e-12, atol=1e-12)
    assert a.ratio_metrics.keys() == b.ratio_metrics.keys()
    for name in a.ratio_metrics:
        torch.testing.assert_close(a.ratio_metrics[name][0], b.ratio_metrics[name][0], rtol=1e-12, atol=1e-12)
    for x, y in zip(grads_a, grads_b):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_loss_masked_tokens_and_teacher_states_do_not_change_the_loss():
    strategy, draft, batch = _setup("rnn")
    before = _strategy_terms(strategy, draft, batch).terms
    masked = batch["loss_mask"] == 0
    changed = dict(batch)
    changed["input_ids"] = torch.where(masked, (batch["input_ids"] + 5) % 47, batch["input_ids"])
    changed["last_hidden"] = torch.where(masked[..., None], torch.randn_like(batch["last_hidden"]),
                                         batch["last_hidden"])
    after = _strategy_terms(strategy, draft, changed).terms
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)


def test_the_loss_is_pooled_over_tokens_across_samples():
    strategy, draft, _ = _setup(lengths=(18, 9))
    samples = synthetic_samples(INFO, strategy.feature_request(INFO), lengths=(18, 9))
    together = strategy.loss(draft, strategy.collate(samples), CTX).terms
    alone = [strategy.loss(draft, strategy.collate([s]), CTX).terms for s in samples]
    torch.testing.assert_close(together[0], alone[0][0] + alone[1][0])  # sums, not a mean of means
    torch.testing.assert_close(together[1], alone[0][1] + alone[1][1])


def test_loss_falls_and_the_expected_acceptance_length_rises_on_a_fixed_batch():
    strategy, draft, batch = _setup("gated")
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    history = []
    for step in range(40):
        out = strategy.loss(draft, batch, StepContext(step=step, total_steps=40))
        opt.zero_grad()
        (out.terms[0] / out.terms[1]).backward()
        opt.step()
        num, den = out.ratio_metrics["tau_probabilistic"]
        history.append((float(out.terms[0].detach() / out.terms[1]), float(num / den)))
    assert history[-1][0] < 0.5 * history[0][0], history
    assert history[-1][1] > history[0][1] + 0.5, history
