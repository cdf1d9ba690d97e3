"""DSpark's objective, token-pooled: (α_ce·ΣCE·w + α_l1·Σ‖p_d − p_t‖₁·w + α_conf·ΣBCE(conf, a)·w) / Σw.

Returned as ``terms`` (numerator, Σw), so the trainer divides by the weight summed over every rank
and accumulation step: the reference's ``world · numerator / all-reduced Σw`` under gradient
averaging, without a collective inside the loss. ``a = clamp(1 − ½‖p_d − p_t‖₁, 0, 1)`` is the
probability that speculative sampling accepts the slot's draft; ``tau_probabilistic`` is the
expected acceptance length of a block, ``1 + Σ_k Π_{j≤k} a_j`` over its valid prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specforge.api import LossOutput
from specforge_dflash.loss import accept_lengths, weighted_sum
from specforge_dspark.labels import DSparkTargets


@dataclass(frozen=True)
class LossWeights:
    ce: float = 0.1
    l1: float = 0.9
    confidence: float = 1.0


def expected_accept_length(accept: torch.Tensor, binary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ over blocks with a valid slot of 1 + Σ_k Π_{j≤k} a_j, number of such blocks); [B, N, bs] inputs."""
    prefix = (accept * binary).cumprod(dim=-1)  # [B, N, bs]
    valid = (binary > 0).any(-1).to(accept.dtype)  # [B, N]
    return ((1.0 + prefix.sum(-1)) * valid).sum(), valid.sum()


def dspark_loss_output(out: dict[str, torch.Tensor], targets: DSparkTargets, keep: torch.Tensor,
                       alpha: LossWeights) -> LossOutput:
    w, binary = targets.weights, targets.binary
    den = w.sum()
    sums = {"ce": weighted_sum(out["ce"], w)}
    if "l1" in out:
        sums["l1"] = weighted_sum(out["l1"], w)
    if "confidence_bce" in out:
        sums["confidence"] = weighted_sum(out["confidence_bce"], w)
    numerator = sum(getattr(alpha, name) * value for name, value in sums.items() if getattr(alpha, name) > 0)
    with torch.no_grad():
        count = binary.sum()
        ratios = {f"{name}_loss": (value.detach(), den.detach()) for name, value in sums.items()}
        ratios["accuracy"] = (weighted_sum(out["correct"], binary), count)
        ratios["accept_len"] = accept_lengths(out["correct"], binary, keep)
        per_slot_ce = (out["ce"].detach() * binary).sum((0, 1))  # [bs]
        per_slot_ok = (out["correct"] * binary).sum((0, 1))
        per_slot_n = binary.sum((0, 1))
        for k in range(binary.shape[-1]):
            ratios[f"ce_slot{k}"] = (per_slot_ce[k], per_slot_n[k])
            ratios[f"accuracy_slot{k}"] = (per_slot_ok[k], per_slot_n[k])
        if "l1" in out:
            ratios["teacher_agreement"] = (weighted_sum(out["agree"], binary), count)
            ratios["teacher_top1_prob"] = (weighted_sum(out["teacher_top1"], binary), count)
            ratios["draft_top1_prob"] = (weighted_sum(out["draft_top1"], binary), count)
            ratios["tau_probabilistic"] = expected_accept_length(out["accept"], binary)
        if "confidence_error" in out:
            ratios["confidence_abs_error"] = (weighted_sum(out["confidence_error"], w), den.detach())
    return LossOutput(terms=(numerator, den), ratio_metrics=ratios, metrics={"blocks": float(keep.sum().item())})
