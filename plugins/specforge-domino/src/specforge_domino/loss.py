"""Domino's objective: (1-λ)·CE(final) + λ·CE(base), token-weighted, with its metrics.

Returned as ``terms`` (numerator, Σw) so the trainer forms one token mean over the whole
optimizer window; upstream normalises each micro-batch instead (identical with one micro-batch
per step on one rank).
"""

from __future__ import annotations

import torch

from specforge.api import LossOutput
from specforge_dflash.labels import BlockTargets
from specforge_dflash.loss import accept_lengths, weighted_sum


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
