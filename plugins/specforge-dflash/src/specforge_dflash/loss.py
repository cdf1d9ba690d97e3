"""Per-slot cross-entropy over the frozen target lm_head, in memory-bounded chunks, and its reduction.

The vocabulary projection of N·bs slots is the largest activation of a DFlash step, so at most
``loss_chunk_blocks`` blocks of logits exist at once, forward or backward, and the result equals
one full pass. The lm_head is frozen, so ``frozen_head_ce`` takes each chunk's d CE / d hidden
while the chunk's logits exist and backward only scales it by the incoming gradient: two
vocabulary matmuls a step, against three for recomputation under activation checkpointing.
``softmax_ce`` is shared with Domino's head loss, which recomputes all but its last chunk in
backward instead (its correction has trainable weights after the vocabulary projection).
"""

from __future__ import annotations

import torch

from specforge.api import LossOutput
from specforge_dflash.labels import BlockTargets

HALF = (torch.float16, torch.bfloat16)


def softmax_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [C, V], labels [C] -> (softmax [C, V] in at least fp32, CE [C], argmax == label [C]).

    One max (with its index, for the argmax) and one fused softmax: the log-sum-exp is read off
    the top class, whose probability (>= 1/V) never underflows, so CE = lse - logit[label] as
    in ``F.cross_entropy``.
    """
    acc = logits.to(torch.float32 if logits.dtype in HALF else logits.dtype)
    top, arg = acc.max(-1)  # [C]: the first maximum, as argmax
    p = torch.softmax(acc, -1)
    lse = top - p.gather(1, arg[:, None]).squeeze(1).log()
    return p, lse - acc.gather(1, labels[:, None]).squeeze(1), arg == labels


def softmax_grad(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [C, V], labels [C] -> d CE / d logits [C, V] (softmax - one_hot, at least fp32)."""
    acc = logits.to(torch.float32 if logits.dtype in HALF else logits.dtype)
    return minus_one_hot_(torch.softmax(acc, -1), labels)


def minus_one_hot_(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """softmax [C, V] -> d CE / d logits = softmax - one_hot(labels), in place."""
    return p.scatter_add_(1, labels[:, None], p.new_full((len(labels), 1), -1.0))


class _FrozenHeadCE(torch.autograd.Function):
    """CE of ``h @ weight.T`` per row, with d CE / d h computed in forward chunk by chunk."""

    @staticmethod
    def forward(ctx, h, weight, labels, chunk_rows, need_grad):
        ces, hits, grads = [], [], []
        for start in range(0, h.shape[0], chunk_rows):
            hc, yc = h[start:start + chunk_rows], labels[start:start + chunk_rows]  # [C, H], [C]
            p, ce, hit = softmax_ce(torch.matmul(hc, weight.t()), yc)  # p [C, V]
            ces.append(ce)
            hits.append(hit)
            if need_grad:
                grads.append(torch.matmul(minus_one_hot_(p, yc).to(weight.dtype), weight).to(h.dtype))  # [C, H]
            del p
        if need_grad:
            ctx.save_for_backward(torch.cat(grads))
        return torch.cat(ces), torch.cat(hits)

    @staticmethod
    def backward(ctx, grad_ce, _grad_hits):
        (dce_dh,) = ctx.saved_tensors  # [M, H]
        return dce_dh * grad_ce[:, None].to(dce_dh.dtype), None, None, None, None


def frozen_head_ce(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                   chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """h [..., H], frozen ``weight`` [V, H], labels [...] -> (CE [...], argmax == label [...]).

    Equals ``F.cross_entropy(h @ weight.T, labels)`` per row (and the argmax check) and its
    gradient; the logits exist ``chunk_rows`` rows at a time.
    """
    if weight.requires_grad:
        raise ValueError("frozen_head_ce needs a frozen projection (the target's lm_head)")
    need_grad = torch.is_grad_enabled() and h.requires_grad
    ce, hit = _FrozenHeadCE.apply(h.reshape(-1, h.shape[-1]), weight, labels.reshape(-1), chunk_rows, need_grad)
    return ce.view(labels.shape), hit.view(labels.shape)


def kept_blocks(inputs: tuple[torch.Tensor, ...], keep: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(indices [M] of kept blocks in B·N order, each input [B, N, ...] reduced to [M, ...])."""
    idx = keep.flatten().nonzero().squeeze(1)  # [M]
    if idx.numel() == 0:
        raise ValueError("no kept block to compute a loss on")
    return idx, [t.flatten(0, 1).index_select(0, idx) for t in inputs]


def scatter_blocks(parts: tuple[torch.Tensor, ...], idx: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Results [M, ...] of kept blocks back to [B, N, ...], zeros (False) for unkept blocks."""
    B, N = keep.shape
    return tuple(p.new_zeros((B * N, *p.shape[1:])).index_copy(0, idx, p).view(B, N, *p.shape[1:]) for p in parts)


def weighted_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ values·weights in the wider of the two float types (booleans count as 0/1)."""
    if values.is_floating_point():
        return (values * weights.to(values.dtype)).sum()
    return (values.to(weights.dtype) * weights).sum()


def accept_lengths(correct: torch.Tensor, binary: torch.Tensor,
                   keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ over kept blocks of 1 + longest all-correct supervised prefix, number of kept blocks).

    Unsupervised slots count as correct and add nothing, as in the reference metric.
    """
    supervised = binary > 0
    ok = correct | ~supervised
    prefix = ok.long().cumprod(-1)  # [B, N, bs]: still all correct up to here
    length = (prefix * supervised).sum(-1)  # [B, N]
    return ((1 + length) * keep).sum().to(binary.dtype), keep.sum().to(binary.dtype)


def dpace_weights(ce: torch.Tensor, binary: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """Detached D-PACE slot weights [B, N, bs] from slot CE and the supervised-slot mask [B, N, bs].

    With q = exp(-CE) the draft's probability of the label, a supervised slot survives with
    s = (1-α)·q + α (unsupervised slots: 1); P_k = Π_{j<=k} s_j, W_k = Σ_{j>=k} P_j·binary_j.
    ``dpace``: W; ``dpace-cumulative-confidence-only``: P; ``dpace-continuation-value-only``: W / P.
    """
    with torch.no_grad():
        work = torch.promote_types(ce.dtype, torch.float32)
        q, binary = torch.exp(-ce.to(work)), binary.to(work)
        survive = torch.where(binary > 0, (1 - alpha) * q + alpha, torch.ones_like(q))
        prefix = torch.cumprod(survive, dim=-1)  # [B, N, bs]
        if kind == "dpace-cumulative-confidence-only":
            return prefix
        suffix = (prefix * binary).flip(-1).cumsum(-1).flip(-1)  # [B, N, bs]
        if kind == "dpace":
            return suffix
        if kind == "dpace-continuation-value-only":
            return suffix / prefix.clamp_min(torch.finfo(prefix.dtype).tiny)
    raise ValueError(f"unknown D-PACE loss {kind!r}")


def dpace_loss_output(out: dict[str, torch.Tensor], targets: BlockTargets, keep: torch.Tensor, kind: str,
                      alpha: float) -> LossOutput:
    """Per-sample mean: ``terms = (Σ CE·binary·weight, batch size)``; metrics as ``dflash_loss_output``."""
    binary = targets.binary
    weights = dpace_weights(out["ce"], binary, kind, alpha)
    numerator = weighted_sum(out["ce"], binary * weights)
    return dflash_loss_output(out, targets, keep, numerator=numerator,
                              denominator=numerator.new_tensor(float(keep.shape[0])))


def dflash_loss_output(out: dict[str, torch.Tensor], targets: BlockTargets, keep: torch.Tensor,
                       numerator: torch.Tensor | None = None, denominator: torch.Tensor | None = None) -> LossOutput:
    """Global token mean: ``terms = (Σ CE·w, Σ w)`` (or the given terms); accuracy and accept length as ratios."""
    if numerator is None:
        numerator = weighted_sum(out["ce"], targets.weights)
        denominator = targets.weights.sum()
    binary = targets.binary
    with torch.no_grad():
        ratios = {
            "accuracy": (weighted_sum(out["correct"], binary), binary.sum()),
            "accept_len": accept_lengths(out["correct"], binary, keep),
        }
    return LossOutput(terms=(numerator, denominator), ratio_metrics=ratios,
                      metrics={"blocks": float(keep.sum().item())})
