"""P-EAGLE's objective and metrics, pure functions of element logits and teacher tensors.

Loss = the masked mean over elements of the soft cross-entropy against the target distribution
renormalised over the draft vocabulary; the mask is loss_mask · t2d[target argmax] at the
element's position (a target outside the draft vocabulary cannot be drafted, so it is not
trained). Accuracy per depth counts the same elements: draft argmax, mapped to a target id,
equals the target's argmax.
"""

from __future__ import annotations

import torch


def soft_cross_entropy_sum(logits: torch.Tensor, probs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ_e w_e · (−Σ_v p_e(v) log softmax(logits_e)(v))``; logits, probs [B, N, Vd], weight [B, N]."""
    log_q = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    per_element = -(probs.to(log_q.dtype) * log_q).sum(-1)  # [B, N]
    return (per_element * weight.to(log_q.dtype)).sum()


def masked_mean(total: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``total / Σw``; 0 when nothing is supervised (the sum is 0 then, and so is its gradient)."""
    return total / weight.clamp_min(1e-6)


@torch.no_grad()
def depth_accuracy(predicted: torch.Tensor, target_ids: torch.Tensor, weight: torch.Tensor, depths: torch.Tensor,
                   num_depths: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hits [D], supervised elements [D]) per depth: predicted (target ids) == target_ids where weight > 0."""
    supervised = (weight > 0).to(torch.float32)  # [B, N]
    hit = (predicted == target_ids).to(torch.float32) * supervised
    onehot = torch.nn.functional.one_hot(depths.clamp(0, num_depths - 1), num_depths).to(torch.float32)  # [B, N, D]
    return (hit[..., None] * onehot).sum((0, 1)), (supervised[..., None] * onehot).sum((0, 1))
