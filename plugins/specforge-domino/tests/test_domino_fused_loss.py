"""Domino's chunked head loss equals dense cross-entropy of the final and base logits, and the
losses of commit 5bc279e; its step keeps no score-sized tensor for backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specforge.contracts import StepContext
from specforge.testing.synthetic import synthetic_features, synthetic_ids, synthetic_samples, tiny_target_info
from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors
from specforge_domino.loss import corrected_head_ce
from specforge_domino.options import DominoOptions
from specforge_domino.strategy import DominoStrategy

CTX = StepContext(step=3, total_steps=10, micro_step=1)  # λ = 0.7: both logits count
SAME_POSITION = {"shift_label": False, "num_draft_layers": 2, "layer_types": ("full_attention", "sliding_attention"),
                 "sliding_window": 4}


@pytest.mark.parametrize("chunk_rows", [1, 5, 1000])
def test_corrected_head_ce_equals_dense_cross_entropy_in_values_and_gradients(chunk_rows):
    gen = torch.Generator().manual_seed(0)

    def r(*shape, grad=True):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(grad)

    h, feats, w2 = r(3, 4, 16), r(3, 4, 6), r(40, 6)
    weight = r(40, 16, grad=False)
    labels = torch.randint(0, 40, (3, 4), generator=gen)
    got = corrected_head_ce(h, feats, weight, w2, labels, chunk_rows)
    base = h @ weight.T
    final = base + feats @ w2.T

    def ce(logits):
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(3, 4)

    expected = (ce(final), final.argmax(-1) == labels, ce(base), base.argmax(-1) == labels)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    wf, wb = torch.rand(3, 4, generator=gen, dtype=torch.float64), torch.rand(3, 4, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((got[0] * wf + got[2] * wb).sum(), (h, feats, w2))
    refs = torch.autograd.grad((expected[0] * wf + expected[2] * wb).sum(), (h, feats, w2))
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def _setup(dtype, **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype=dtype)
    strategy = DominoStrategy(DominoOptions(block_size=4, num_anchors=20, **options))
    batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=(70, 33, 9)))
    torch.manual_seed(0)
    return strategy, strategy.build_draft(info, None), batch


def _grads(draft):
    return [p.grad for p in draft.parameters() if p.requires_grad]


def dense_reference_loss(strategy, draft, batch):
    """Today's objective written out: full final and base logits of every block, per-slot CE mixed by λ."""
    cfg = draft.config
    seeds = [anchor_seed(int(h), CTX.step, CTX.micro_step) for h in batch["sample_hash"].tolist()]
    anchors, keep = sample_anchors(batch["loss_mask"], strategy.options.num_anchors, seeds)
    targets = strategy.block_targets(batch, anchors, keep, cfg)
    blocks = noise_blocks(batch["input_ids"], anchors, keep, cfg.block_size, cfg.mask_token_id)
    out = draft(batch["hidden_states"], blocks, anchors, keep, targets.prev_ids)  # logits [B, N, bs, V]

    def ce(logits):
        flat = F.cross_entropy(logits.flatten(0, 2), targets.labels.flatten(), reduction="none")
        return flat.view_as(targets.labels)

    lam = strategy.lambda_base(CTX)
    mixed = (1 - lam) * ce(out["logits"]) + lam * ce(out["base_logits"])
    return (mixed * targets.weights).sum() / targets.weights.sum()


@pytest.mark.parametrize("options", [{}, SAME_POSITION])
def test_the_loss_and_its_gradients_equal_a_dense_reference(options):
    strategy, draft, batch = _setup("float64", **options)
    ref_strategy, ref_draft, _ = _setup("float64", attention="blockwise", **options)
    with torch.no_grad():  # a correction that clearly moves the logits
        for d in (draft, ref_draft):
            d.embed_proj[2].weight.copy_(torch.randn(d.embed_proj[2].weight.shape,
                                                     generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    num, den = strategy.loss(draft, batch, CTX).terms
    (num / den).backward()
    ref = dense_reference_loss(ref_strategy, ref_draft, batch)
    ref.backward()
    torch.testing.assert_close((num / den).detach(), ref.detach(), rtol=1e-12, atol=0)
    for got, expected in zip(_grads(draft), _grads(ref_draft)):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


# Loss and gradient norm of this setup, fp32, computed by commit 5bc279e (blockwise attention,
# checkpointed vocabulary chunks) with torch 2.13 on CPU.
TODAY = {"next_token": (4.36983585357666, 0.42337552596845207),
         "same_position": (4.388611316680908, 0.645097027935131)}


@pytest.mark.parametrize(("name", "options"), [("next_token", {}), ("same_position", SAME_POSITION)])
def test_the_fp32_loss_equals_the_one_before_this_backend(name, options):
    strategy, draft, batch = _setup("float32", **options)
    num, den = strategy.loss(draft, batch, CTX).terms
    loss = num / den
    loss.backward()
    grad_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in _grads(draft))).item()
    expected_loss, expected_norm = TODAY[name]
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert grad_norm == pytest.approx(expected_norm, rel=1e-5)


def test_bf16_autocast_trains_through_the_same_path():
    strategy, draft, batch = _setup("float32")
    num, den = strategy.loss(draft, batch, CTX).terms
    ref = (num / den).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        num, den = strategy.loss(draft, batch, CTX).terms
        loss = num / den
    loss.backward()
    assert loss.item() == pytest.approx(ref, rel=2e-2)
    assert all(torch.isfinite(g).all() for g in _grads(draft)) and draft.embed_proj[2].weight.grad.abs().sum() > 0


def test_no_saved_tensor_is_as_large_as_the_scores():
    S, N, bs = 512, 64, 4
    info = tiny_target_info(hidden_size=32, vocab_size=48, num_attention_heads=4)
    largest = {}
    for attention in ("prefix", "blockwise"):
        strategy = DominoStrategy(DominoOptions(block_size=bs, num_anchors=N, attention=attention))
        batch = strategy.collate([synthetic_features(info, strategy.feature_request(info),
                                                     synthetic_ids(S, info, seed=0), [1] * S)])
        torch.manual_seed(0)
        draft = strategy.build_draft(info, None)
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            num, den = strategy.loss(draft, batch, StepContext(step=0, total_steps=10)).terms
        (num / den).backward()
        largest[attention] = max(sizes)
    bound = min(S * S, N * bs * S)  # one score per (query, context key), or S² of anything
    assert largest["prefix"] <= bound // 4, largest  # the largest: MLP activations [N·bs, intermediate]
    assert largest["blockwise"] >= bound  # the hooks do see the probabilities the old backend keeps
