"""EAGLE3's per-step objective and metrics (pure functions of logits and teacher tensors)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def soft_cross_entropy(logits: torch.Tensor, probs: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
    """``Σ_{b,t} pm · (−Σ_v p log softmax(logits)) / (B·S)``: masked positions count in the mean.

    logits, probs [B, S, Vd]; position_mask [B, S].
    """
    log_q = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    per_position = -(probs.to(log_q.dtype) * log_q).sum(-1)  # [B, S]
    return (per_position * position_mask.to(log_q.dtype)).sum() / position_mask.numel()


@torch.no_grad()
def step_accuracy(logits: torch.Tensor, d2t: torch.Tensor, target_ids: torch.Tensor,
                  loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hits, supervised positions): the draft argmax, mapped to a target id, equals the target's
    argmax. Targets outside the draft vocabulary count as misses."""
    pred = logits.argmax(-1)  # [B, S] draft ids
    hits = ((pred + d2t[pred]) == target_ids).float() * loss_mask.float()
    return hits.sum(), loss_mask.float().sum()


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
