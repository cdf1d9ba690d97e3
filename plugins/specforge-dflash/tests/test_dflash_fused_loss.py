"""The fused frozen-head cross-entropy and the whole DFlash loss equal a slow dense reference and the
losses of commit 5bc279e (before prefix attention and the fused loss)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from specforge.contracts import StepContext
from specforge.testing.synthetic import synthetic_samples, tiny_target_info
from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors
from specforge_dflash.loss import frozen_head_ce
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy

CTX = StepContext(step=3, total_steps=10, micro_step=1)
SLIDING = {"num_draft_layers": 2, "layer_types": ("sliding_attention", "full_attention"), "sliding_window": 5}


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_frozen_head_ce_equals_dense_cross_entropy_in_values_and_gradients(chunk_rows):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(5, 4, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(40, 16, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 40, (5, 4), generator=gen)
    labels[0] = (h[0].detach() @ weight.T).argmax(-1)  # some rows right, for the accuracy
    ce, hit = frozen_head_ce(h, weight, labels, chunk_rows)
    logits = h @ weight.T
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(5, 4)
    torch.testing.assert_close(ce, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(hit, logits.argmax(-1) == labels) and bool(hit[0].all())
    w = torch.rand(5, 4, generator=gen, dtype=torch.float64)
    (got,) = torch.autograd.grad((ce * w).sum(), h)
    (ref,) = torch.autograd.grad((expected * w).sum(), h)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_frozen_head_ce_refuses_a_trainable_projection():
    with pytest.raises(ValueError, match="frozen"):
        frozen_head_ce(torch.randn(2, 3, 4), torch.randn(5, 4, requires_grad=True), torch.zeros(2, 3).long(), 8)


def _setup(dtype, **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype=dtype)
    strategy = DFlashStrategy(DFlashOptions(block_size=4, num_anchors=20, **options))
    batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=(70, 33, 9)))
    torch.manual_seed(0)
    return strategy, strategy.build_draft(info, None), batch


def _loss_and_grads(strategy, draft, batch):
    num, den = strategy.loss(draft, batch, CTX).terms
    loss = num / den
    loss.backward()
    return loss.detach(), [p.grad for p in draft.parameters() if p.requires_grad]


def dense_reference_loss(strategy, draft, batch):
    """Today's objective written out: full logits of every block, per-slot cross-entropy, Σ CE·w / Σ w."""
    cfg = draft.config
    seeds = [anchor_seed(int(h), CTX.step, CTX.micro_step) for h in batch["sample_hash"].tolist()]
    anchors, keep = sample_anchors(batch["loss_mask"], strategy.options.num_anchors, seeds)
    targets = strategy.block_targets(batch, anchors, keep, cfg)
    blocks = noise_blocks(batch["input_ids"], anchors, keep, cfg.block_size, cfg.mask_token_id)
    logits = draft(batch["hidden_states"], blocks, anchors, keep)["logits"]  # [B, N, bs, V]
    ce = F.cross_entropy(logits.flatten(0, 2), targets.labels.flatten(), reduction="none").view_as(targets.labels)
    return (ce * targets.weights).sum() / targets.weights.sum()


@pytest.mark.parametrize("options", [{}, SLIDING])
def test_the_loss_and_its_gradients_equal_a_dense_reference(options):
    strategy, draft, batch = _setup("float64", **options)
    loss, grads = _loss_and_grads(strategy, draft, batch)
    ref_strategy, ref_draft, _ = _setup("float64", attention="blockwise", **options)
    ref = dense_reference_loss(ref_strategy, ref_draft, batch)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=0)
    for got, expected in zip(grads, [p.grad for p in ref_draft.parameters() if p.requires_grad]):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


# Loss and gradient norm of this setup, fp32, computed by commit 5bc279e (blockwise attention,
# checkpointed vocabulary chunks) with torch 2.13 on CPU.
TODAY = {"full": (4.385621547698975, 0.490992177117428), "sliding": (4.381953716278076, 0.7712815477429257)}


@pytest.mark.parametrize(("name", "options"), [("full", {}), ("sliding", SLIDING)])
def test_the_fp32_loss_equals_the_one_before_this_backend(name, options):
    strategy, draft, batch = _setup("float32", **options)
    loss, grads = _loss_and_grads(strategy, draft, batch)
    grad_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    expected_loss, expected_norm = TODAY[name]
    assert loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert grad_norm == pytest.approx(expected_norm, rel=1e-5)


def test_bf16_autocast_trains_through_the_same_path():
    strategy, draft, batch = _setup("float32")
    ref, _ = _loss_and_grads(strategy, draft, batch)
    draft.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        num, den = strategy.loss(draft, batch, CTX).terms
        loss = num / den
    loss.backward()
    grads = [p.grad for p in draft.parameters() if p.requires_grad]
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    assert all(torch.isfinite(g).all() for g in grads) and draft.fc.weight.grad.abs().sum() > 0
