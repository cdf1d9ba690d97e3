"""EAGLE3's per-step objective and metrics.

The step loss is fused with the draft lm_head and computed over chunks of positions, so the
[B, S, Vd] logits of a step never exist whole and none are kept for backward (seven steps of
them would be the largest activation of a real-vocabulary step). When the weight-gradient buffer
is small (``weight.numel() <= GRAD_IN_FORWARD_ELEMENTS``) the gradients are computed in the
forward pass while each chunk's logits are at hand, and backward only scales them; otherwise
backward recomputes each chunk's logits.

The LK losses (arXiv 2602.23881) need, besides the soft cross-entropy, each position's expected
acceptance ``α = Σ_v min(p̃_v, q_v)`` (p̃ the target's un-renormalised probabilities on the draft
vocabulary, q the draft's softmax). ``fused_soft_cross_entropy_acceptance`` returns α [B, S] as a
differentiable output of the same chunked pass; its backward recomputes each chunk's logits, so
the KL path above is untouched by it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CHUNK_ELEMENTS = 2**22  # draft-vocabulary logits alive at once (16 MiB in fp32)
GRAD_IN_FORWARD_ELEMENTS = 2**24  # largest lm_head whose gradient is kept from forward (64 MiB fp32)


def _matmul_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


class _FusedSoftCrossEntropy(torch.autograd.Function):
    """``Σ pm · (−Σ_v p log softmax(x Wᵀ)) / (B·S)`` and the argmax of ``x Wᵀ``, chunk by chunk."""

    @staticmethod
    def forward(ctx, x, weight, probs, position_mask, chunk, mm_dtype, grad_now):
        bsz, seq, _ = x.shape
        work = torch.promote_types(mm_dtype, torch.float32)
        total = torch.zeros((), dtype=work, device=x.device)
        pred = torch.empty(bsz, seq, dtype=torch.long, device=x.device)
        dx = torch.empty_like(x) if grad_now else None
        dw = torch.zeros(weight.shape, dtype=work, device=x.device) if grad_now else None
        w = weight.to(mm_dtype)
        n = position_mask.numel()
        for start in range(0, seq, chunk):
            part = slice(start, start + chunk)
            xs = x[:, part].to(mm_dtype)  # [B, c, H]
            logits = (xs @ w.T).to(work)  # [B, c, Vd]
            top = logits.argmax(-1, keepdim=True)  # [B, c, 1]
            pred[:, part] = top[..., 0]
            q = torch.softmax(logits, dim=-1)
            lse = logits.gather(-1, top) - q.gather(-1, top).log()  # [B, c, 1]: log Σ exp, from the top logit
            p = probs[:, part].to(work)
            m = position_mask[:, part].to(work)
            # −Σ_v p log q = lse · Σp − Σ_v p · logit
            total += ((lse[..., 0] * p.sum(-1) - (p * logits).sum(-1)) * m).sum()
            if grad_now:
                g = _logit_grad(q, p, m, n).to(mm_dtype)  # [B, c, Vd]
                dx[:, part] = (g @ w).to(x.dtype)
                dw += (g.flatten(0, 1).T @ xs.flatten(0, 1)).to(work)
        ctx.mark_non_differentiable(pred)
        ctx.chunk, ctx.mm_dtype, ctx.grad_now, ctx.n = chunk, mm_dtype, grad_now, n
        if grad_now:
            ctx.save_for_backward(dx, dw)
        else:
            ctx.save_for_backward(x, weight, probs, position_mask)
        return total / n, pred

    @staticmethod
    def backward(ctx, grad_loss, _grad_pred):
        if ctx.grad_now:
            dx, dw = ctx.saved_tensors
            return (dx * grad_loss.to(dx.dtype), (dw * grad_loss).to(dw.dtype), None, None, None, None, None)
        x, weight, probs, position_mask = ctx.saved_tensors
        work = torch.promote_types(ctx.mm_dtype, torch.float32)
        w = weight.to(ctx.mm_dtype)
        dx = torch.empty_like(x)
        dw = torch.zeros(weight.shape, dtype=work, device=x.device)
        for start in range(0, x.shape[1], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            xs = x[:, part].to(ctx.mm_dtype)
            q = torch.softmax((xs @ w.T).to(work), dim=-1)
            g = _logit_grad(q, probs[:, part].to(work), position_mask[:, part].to(work), ctx.n)
            g = (g * grad_loss.to(work)).to(ctx.mm_dtype)
            dx[:, part] = (g @ w).to(x.dtype)
            dw += (g.flatten(0, 1).T @ xs.flatten(0, 1)).to(work)
        return dx, dw.to(weight.dtype), None, None, None, None, None


def _logit_grad(q: torch.Tensor, p: torch.Tensor, m: torch.Tensor, n: int) -> torch.Tensor:
    """d loss / d logits for one chunk: ``pm/n · (softmax · Σp − p)`` [B, c, Vd]; overwrites ``q``."""
    scale = (m / n)[..., None]  # [B, c, 1]
    return q.mul_(p.sum(-1, keepdim=True) * scale).sub_(p * scale)


def fused_soft_cross_entropy(x: torch.Tensor, weight: torch.Tensor, probs: torch.Tensor,
                             position_mask: torch.Tensor, chunk_elements: int | None = None,
                             grad_in_forward: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, draft argmax [B, S]) of logits ``x Wᵀ`` against ``probs``; masked positions count in the mean.

    x [B, S, H] (the normed draft hidden); weight [Vd, H] (the draft lm_head); probs [B, S, Vd];
    position_mask [B, S]. The loss is ``Σ_{b,t} pm · (−Σ_v p log softmax(x Wᵀ)) / (B·S)``.
    ``chunk_elements`` bounds the logits alive at once (default ``CHUNK_ELEMENTS``);
    ``grad_in_forward`` forces one of the two gradient modes (default: by the weight's size).
    """
    budget = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    chunk = max(1, budget // (x.shape[0] * weight.shape[0]))
    if grad_in_forward is None:
        grad_in_forward = weight.numel() <= GRAD_IN_FORWARD_ELEMENTS
    grad_now = grad_in_forward and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    mm_dtype = _matmul_dtype(x, weight)  # the autocast dtype, applied by hand below (and in backward)
    with torch.autocast(x.device.type, enabled=False):
        return _FusedSoftCrossEntropy.apply(x, weight, probs, position_mask, chunk, mm_dtype, grad_now)


class _FusedSoftCrossEntropyAcceptance(torch.autograd.Function):
    """The soft cross-entropy of ``_FusedSoftCrossEntropy`` plus α = Σ_v min(probs·mass, softmax(x Wᵀ))
    per position [B, S]; backward recomputes each chunk's logits."""

    @staticmethod
    def forward(ctx, x, weight, probs, mass, position_mask, chunk, mm_dtype):
        bsz, seq, _ = x.shape
        work = torch.promote_types(mm_dtype, torch.float32)
        total = torch.zeros((), dtype=work, device=x.device)
        pred = torch.empty(bsz, seq, dtype=torch.long, device=x.device)
        alpha = torch.empty(bsz, seq, dtype=work, device=x.device)
        w = weight.to(mm_dtype)
        for start in range(0, seq, chunk):
            part = slice(start, start + chunk)
            logits = (x[:, part].to(mm_dtype) @ w.T).to(work)  # [B, c, Vd]
            top = logits.argmax(-1, keepdim=True)
            pred[:, part] = top[..., 0]
            q = torch.softmax(logits, dim=-1)
            lse = logits.gather(-1, top) - q.gather(-1, top).log()  # [B, c, 1]
            p = probs[:, part].to(work)
            m = position_mask[:, part].to(work)
            total += ((lse[..., 0] * p.sum(-1) - (p * logits).sum(-1)) * m).sum()
            alpha[:, part] = torch.minimum(p * mass[:, part, None].to(work), q).sum(-1)
        ctx.mark_non_differentiable(pred)
        ctx.chunk, ctx.mm_dtype, ctx.n = chunk, mm_dtype, position_mask.numel()
        ctx.save_for_backward(x, weight, probs, mass, position_mask)
        return total / ctx.n, pred, alpha

    @staticmethod
    def backward(ctx, grad_loss, _grad_pred, grad_alpha):
        x, weight, probs, mass, position_mask = ctx.saved_tensors
        work = torch.promote_types(ctx.mm_dtype, torch.float32)
        w = weight.to(ctx.mm_dtype)
        dx = torch.empty_like(x)
        dw = torch.zeros(weight.shape, dtype=work, device=x.device)
        for start in range(0, x.shape[1], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            xs = x[:, part].to(ctx.mm_dtype)
            q = torch.softmax((xs @ w.T).to(work), dim=-1)  # [B, c, Vd]
            p = probs[:, part].to(work)
            # d α / d q_v = [q_v < p̃_v] (half at a tie, as torch.minimum); d α / d logits = q·(d − Σ q·d)
            p_on_draft = p * mass[:, part, None].to(work)
            d = (q < p_on_draft).to(work) + 0.5 * (q == p_on_draft).to(work)
            g_alpha = q * (d - (q * d).sum(-1, keepdim=True)) * grad_alpha[:, part, None].to(work)
            g = _logit_grad(q, p, position_mask[:, part].to(work), ctx.n).mul_(grad_loss.to(work)).add_(g_alpha)
            g = g.to(ctx.mm_dtype)
            dx[:, part] = (g @ w).to(x.dtype)
            dw += (g.flatten(0, 1).T @ xs.flatten(0, 1)).to(work)
        return dx, dw.to(weight.dtype), None, None, None, None, None


def fused_soft_cross_entropy_acceptance(x: torch.Tensor, weight: torch.Tensor, probs: torch.Tensor,
                                        mass: torch.Tensor, position_mask: torch.Tensor,
                                        chunk_elements: int | None = None
                                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, draft argmax [B, S], α [B, S]): ``fused_soft_cross_entropy`` plus the expected acceptance
    ``α = Σ_v min(probs·mass, softmax(x Wᵀ))`` of every position (masked ones too), differentiable.

    mass [B, S]: the target's probability mass on the draft vocabulary, so ``probs·mass`` are the
    target's own (not renormalised) probabilities of the draft tokens.
    """
    budget = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    chunk = max(1, budget // (x.shape[0] * weight.shape[0]))
    mm_dtype = _matmul_dtype(x, weight)
    with torch.autocast(x.device.type, enabled=False):
        return _FusedSoftCrossEntropyAcceptance.apply(x, weight, probs, mass, position_mask, chunk, mm_dtype)


def lk_step_losses(kind: str, plosses: torch.Tensor, acceptance: torch.Tensor, log_acceptance: torch.Tensor,
                   kl_scale: float, kl_decay: float) -> torch.Tensor:
    """Per-step LK objectives [T] from the step KL losses and masked-mean (log) acceptances [T].

    ``lk_alpha``: −log_acceptance. ``lk_lambda``: w·kl + (1−w)·(1 − acceptance) with
    ``w = kl_scale·exp(−kl_decay·acceptance)``, the acceptance detached inside w.
    """
    if kind == "lk_alpha":
        return -log_acceptance
    if kind == "lk_lambda":
        w = kl_scale * torch.exp(-kl_decay * acceptance.detach())
        return w * plosses + (1 - w) * (1 - acceptance)
    raise ValueError(f"unknown LK loss {kind!r}; use lk_lambda or lk_alpha")


def prediction_hits(pred: torch.Tensor, d2t: torch.Tensor, target_ids: torch.Tensor,
                    loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hits, supervised positions): draft ids ``pred``, mapped to target ids, equal the target's
    argmax. Targets outside the draft vocabulary count as misses."""
    hits = ((pred + d2t[pred]) == target_ids).float() * loss_mask.float()
    return hits.sum(), loss_mask.float().sum()


@torch.no_grad()
def step_accuracy(logits: torch.Tensor, d2t: torch.Tensor, target_ids: torch.Tensor,
                  loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``prediction_hits`` of the argmax of draft logits [B, S, Vd]."""
    return prediction_hits(logits.argmax(-1), d2t, target_ids, loss_mask)


def weighted_total(plosses: torch.Tensor, decay: float) -> torch.Tensor:
    """``Σ_k decay^k · ploss_k`` over plosses [T] (summed, not averaged)."""
    weights = decay ** torch.arange(plosses.shape[0], device=plosses.device, dtype=plosses.dtype)
    return (weights * plosses).sum()


def tau_estimate(accuracies: Sequence[float]) -> float:
    """Expected tokens per verification if step k is accepted with probability acc_k:
    ``1 + Σ_k Π_{i≤k} acc_i`` (the 1 is the target's own token)."""
    total, running = 1.0, 1.0
    for acc in accuracies:
        running *= acc
        total += running
    return total
