"""The chunked teacher and the chunked fused draft loss equal their dense definitions in float64
(values and gradients), for several samples, odd lengths, padding and chunks that do not divide
the sequence."""

from __future__ import annotations

import pytest
import torch

from specforge_eagle3.loss import fused_soft_cross_entropy
from specforge_eagle3.teacher import build_teacher


def dense_loss(x, weight, probs, position_mask):
    """The definition: Σ pm · (−Σ_v p log softmax(x Wᵀ)) / (B·S), from the full logits."""
    log_q = torch.log_softmax(x @ weight.T, dim=-1)  # [B, S, Vd]
    return (-(probs * log_q).sum(-1) * position_mask).sum() / position_mask.numel()


def loss_case(b=3, s=13, h=8, vd=11, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(b, s, h, generator=gen, dtype=dtype) * 2).requires_grad_()
    weight = torch.randn(vd, h, generator=gen, dtype=dtype).requires_grad_()
    probs = torch.softmax(torch.randn(b, s + 4, vd, generator=gen, dtype=dtype) * 3, -1)[:, 2:2 + s]  # a window
    position_mask = (torch.rand(b, s, generator=gen) > 0.3).to(dtype)
    return x, weight, probs, position_mask


@pytest.mark.parametrize("grad_in_forward", [True, False])
@pytest.mark.parametrize("chunk_elements", [1, 5 * 3 * 11, 10**6])  # 1 position, 5 positions, one chunk
def test_fused_loss_equals_the_dense_definition(grad_in_forward, chunk_elements) -> None:
    x, weight, probs, pm = loss_case()
    loss, pred = fused_soft_cross_entropy(x, weight, probs, pm, chunk_elements=chunk_elements,
                                          grad_in_forward=grad_in_forward)
    want = dense_loss(x, weight, probs, pm)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-14)
    assert torch.equal(pred, (x @ weight.T).argmax(-1))
    upstream = torch.tensor(0.7, dtype=torch.float64)  # a scale, as the decayed step weights give
    got = torch.autograd.grad(loss * upstream, (x, weight))
    ref = torch.autograd.grad(want * upstream, (x, weight))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-13)


def test_fused_loss_counts_probabilities_that_do_not_sum_to_one() -> None:
    """The gradient uses Σp, not 1: exact for any teacher weights."""
    x, weight, probs, pm = loss_case(seed=2)
    probs = probs * 0.5
    loss, _ = fused_soft_cross_entropy(x, weight, probs, pm, chunk_elements=7)
    got = torch.autograd.grad(loss, (x, weight))
    want = torch.autograd.grad(dense_loss(x, weight, probs, pm), (x, weight))
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-13)


def test_fused_loss_without_grad_computes_no_gradient_buffers() -> None:
    x, weight, probs, pm = loss_case(seed=3)
    with torch.no_grad():
        loss, pred = fused_soft_cross_entropy(x, weight, probs, pm, chunk_elements=20, grad_in_forward=True)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, dense_loss(x, weight, probs, pm).detach(), rtol=1e-12, atol=1e-14)
    assert torch.equal(pred, (x @ weight.T).argmax(-1))


@pytest.mark.parametrize("grad_in_forward", [True, False])
def test_fused_loss_under_bf16_autocast_stays_close_to_fp32(grad_in_forward) -> None:
    x, weight, probs, pm = loss_case(s=40, h=32, vd=64, seed=4, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = fused_soft_cross_entropy(x, weight, probs, pm, chunk_elements=3 * 64 * 7,
                                           grad_in_forward=grad_in_forward)
    want = dense_loss(x, weight, probs, pm)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want, rtol=0.02, atol=0.02)
    got = torch.autograd.grad(loss, (x, weight))
    ref = torch.autograd.grad(want, (x, weight))
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and (g - r).norm() / r.norm() < 0.05


# ------------------------------------------------------------------ the teacher


def dense_teacher(last_hidden, loss_mask, attention_mask, head, t2d, ttt):
    """The definition, position by position: the target distribution given h_{t+1}."""
    b, s, _ = last_hidden.shape
    draft_ids = t2d.nonzero().flatten()
    vd = draft_ids.numel()
    probs = torch.full((b, s + ttt, vd), 1.0 / vd, dtype=torch.float64)
    ids = torch.zeros(b, s + ttt, dtype=torch.long)
    pmask = torch.zeros(b, s + ttt, dtype=torch.float64)
    lmask = torch.zeros(b, s + ttt, dtype=torch.float64)
    for i in range(b):
        for t in range(s):
            nxt = last_hidden[i, t + 1] if t + 1 < s else torch.zeros_like(last_hidden[i, 0])
            logits = head @ nxt
            ids[i, t] = logits.argmax()
            probs[i, t] = torch.softmax(logits[draft_ids], 0)
            real_next = t + 1 < s and bool(attention_mask[i, t + 1])
            lmask[i, t] = float(loss_mask[i, t]) * real_next
            pmask[i, t] = lmask[i, t] * bool(t2d[ids[i, t]])
    return probs, ids, pmask, lmask


@pytest.mark.parametrize("chunk_elements", [1, 3 * 2 * 37, 10**6])
def test_chunked_teacher_equals_the_position_by_position_definition(chunk_elements) -> None:
    gen = torch.Generator().manual_seed(0)
    b, s, h, v, ttt = 2, 9, 8, 37, 3
    head = torch.randn(v, h, generator=gen, dtype=torch.float64) * 2
    last = torch.randn(b, s, h, generator=gen, dtype=torch.float64)
    t2d = torch.zeros(v, dtype=torch.bool)
    t2d[torch.randperm(v, generator=gen)[:13]] = True
    attention_mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    loss_mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0, 0, 0]])
    teacher = build_teacher(last, loss_mask, attention_mask, head, t2d, ttt, chunk_elements=chunk_elements)
    probs, ids, pmask, lmask = dense_teacher(last, loss_mask, attention_mask, head, t2d, ttt)
    torch.testing.assert_close(teacher.probs, probs, rtol=1e-12, atol=1e-14)
    assert torch.equal(teacher.target_ids, ids)
    assert torch.equal(teacher.position_mask, pmask)
    assert torch.equal(teacher.loss_mask, lmask)
