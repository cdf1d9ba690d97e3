"""Domino's objective: (1-λ)·CE(final) + λ·CE(base), token-weighted, with its metrics,
and the chunked slot losses of both logits.

Returned as ``terms`` (numerator, Σw) so the trainer forms one token mean over the whole
optimizer window; upstream normalises each micro-batch instead (identical with one micro-batch
per step on one rank).
"""

from __future__ import annotations

import torch

from specforge.api import LossOutput
from specforge_dflash.labels import BlockTargets
from specforge_dflash.loss import accept_lengths, minus_one_hot_, softmax_ce, softmax_grad, weighted_sum


def domino_loss_output(out: dict[str, torch.Tensor], targets: BlockTargets, keep: torch.Tensor,
                       lam: float) -> LossOutput:
    w = targets.weights
    mixed = (1.0 - lam) * out["ce"] + lam * out["base_ce"]  # [B, N, bs]
    numerator = weighted_sum(mixed, w)
    denominator = w.sum()
    binary = targets.binary
    with torch.no_grad():
        ratios = {
            "accuracy": (weighted_sum(out["correct"], binary), binary.sum()),
            "base_accuracy": (weighted_sum(out["base_correct"], binary), binary.sum()),
            "final_loss": (weighted_sum(out["ce"].detach(), w), denominator.detach()),
            "base_loss": (weighted_sum(out["base_ce"].detach(), w), denominator.detach()),
            "accept_len": accept_lengths(out["correct"], binary, keep),
            "base_accept_len": accept_lengths(out["base_correct"], binary, keep),
        }
    return LossOutput(terms=(numerator, denominator), metrics={"lambda_base": lam}, ratio_metrics=ratios)


class _CorrectedHeadCE(torch.autograd.Function):
    """Per row: CE of final = h·Wᵀ + f·W2ᵀ and of base = h·Wᵀ (W frozen, W2 trained).

    The [rows, V] logits exist one chunk at a time. Backward needs d CE / d logits =
    softmax - one_hot of both logits: forward keeps them for its last chunk only (the memory
    it peaked at anyway) and backward recomputes the other chunks (one vocabulary matmul each),
    then scales them by the incoming per-row gradients; base gets the sum of both.
    """

    @staticmethod
    def forward(ctx, h, feats, weight, w2, labels, chunk_rows, need_grad):
        ctx.autocast = _autocast_state(h.device.type)
        outs, kept = [[], [], [], []], ()
        starts = range(0, h.shape[0], chunk_rows)
        for start in starts:
            rows, yc = slice(start, start + chunk_rows), labels[start:start + chunk_rows]
            base = torch.matmul(h[rows], weight.t())  # [C, V]
            p_final, *final_out = softmax_ce(torch.addmm(base, feats[rows], w2.t()), yc)
            p_base, *base_out = softmax_ce(base, yc)
            for out, value in zip(outs, (*final_out, *base_out)):
                out.append(value)
            if need_grad and start == starts[-1]:
                kept = (minus_one_hot_(p_final, yc), minus_one_hot_(p_base, yc))
            del base, p_final, p_base
        ctx.save_for_backward(h, feats, weight, w2, labels, *kept)
        ctx.chunk_rows = chunk_rows
        return tuple(torch.cat(o) for o in outs)

    @staticmethod
    def backward(ctx, g_final, _hit_final, g_base, _hit_base):
        h, feats, weight, w2, labels, *kept = ctx.saved_tensors
        dh, dfeats, dw2 = torch.zeros_like(h), torch.zeros_like(feats), torch.zeros_like(w2)
        starts = range(0, h.shape[0], ctx.chunk_rows)
        with torch.autocast(h.device.type, **ctx.autocast):
            for start in starts:
                rows, yc = slice(start, start + ctx.chunk_rows), labels[start:start + ctx.chunk_rows]
                gf, gb = g_final[rows, None], g_base[rows, None]  # [C, 1]
                if kept and start == starts[-1]:
                    s_final, s_base = kept  # softmax - one_hot, [C, V] each
                else:
                    base = torch.matmul(h[rows], weight.t())
                    s_final, s_base = softmax_grad(torch.addmm(base, feats[rows], w2.t()), yc), softmax_grad(base, yc)
                    del base
                # the per-row scales go on the thin side of the correction's matmuls, and base logits
                # feed both losses: d base = gb·s_base + gf·s_final
                dfeats[rows] = torch.matmul(s_final.to(w2.dtype), w2) * gf.to(w2.dtype)
                dw2 += torch.matmul(s_final.t().to(feats.dtype), feats[rows] * gf.to(feats.dtype)).to(dw2.dtype)
                d_base = torch.mul(s_base, gb).addcmul_(s_final, gf)
                dh[rows] = torch.matmul(d_base.to(weight.dtype), weight)
        return dh, dfeats, None, dw2, None, None, None


def _autocast_state(device_type: str) -> dict:
    """The autocast settings of the forward, to recompute the logits the same way in backward."""
    if not torch.is_autocast_enabled(device_type):
        return {"enabled": False}
    return {"enabled": True, "dtype": torch.get_autocast_dtype(device_type)}


def corrected_head_ce(h: torch.Tensor, feats: torch.Tensor, weight: torch.Tensor, w2: torch.Tensor,
                      labels: torch.Tensor, chunk_rows: int) -> tuple[torch.Tensor, ...]:
    """h [M, bs, H], correction features [M, bs, E], frozen lm_head [V, H], correction projection
    W2 [V, E], labels [M, bs] -> (CE final, correct final, CE base, correct base), each [M, bs].

    Equals per-row ``F.cross_entropy`` (and the argmax check) of ``h·Wᵀ + f·W2ᵀ`` and of ``h·Wᵀ``,
    with their gradients; at most ``chunk_rows`` rows of logits exist at once.
    """
    if weight.requires_grad:
        raise ValueError("corrected_head_ce needs a frozen lm_head")
    shape = labels.shape
    need_grad = torch.is_grad_enabled() and (h.requires_grad or feats.requires_grad or w2.requires_grad)
    outs = _CorrectedHeadCE.apply(h.reshape(-1, h.shape[-1]), feats.reshape(-1, feats.shape[-1]), weight, w2,
                                  labels.reshape(-1), chunk_rows, need_grad)
    return tuple(o.view(shape) for o in outs)
