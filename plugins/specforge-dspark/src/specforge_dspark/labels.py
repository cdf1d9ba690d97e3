"""What each DSpark block slot predicts: the next token, over the block's contiguous valid prefix.

Slot k of the block at anchor p predicts x_{p+k+1} (every slot, slot 0 included), reading
x_{p+k} as its previous token. A slot counts only while every slot before it counts too
(keep · [idx < S] · m_idx, then a cumulative product along the block): once a label leaves the
supervised text, the rest of the block is out. The teacher for slot k is the target's own
final hidden state at position p+k, whose lm_head distribution predicts that same x_{p+k+1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specforge_dflash.labels import BlockTargets, block_targets, slot_decay


@dataclass(frozen=True)
class DSparkTargets(BlockTargets):
    """DFlash's per-slot targets with the cumulative mask, plus the teacher's hidden states."""

    teacher_hidden: torch.Tensor | None = None  # [B, N, bs, H]: target last hidden at p+k


def dspark_targets(input_ids: torch.Tensor, loss_mask: torch.Tensor, anchors: torch.Tensor, keep: torch.Tensor,
                   block_size: int, *, gamma: float | None,
                   last_hidden: torch.Tensor | None = None, dtype=torch.float32) -> DSparkTargets:
    """Labels x_{p+k+1}, prev ids x_{p+k}, weights cumprod(valid)·exp(-k/γ); teacher from ``last_hidden`` [B, S, H]."""
    base = block_targets(input_ids, loss_mask, anchors, keep, block_size, gamma=None, label_shift=1,
                         supervise_first_slot=True, dtype=dtype)
    binary = base.binary.cumprod(dim=-1)  # [B, N, bs]: only the contiguous valid prefix counts
    weights = binary * slot_decay(block_size, gamma, 0, device=binary.device, dtype=binary.dtype)
    teacher = None
    if last_hidden is not None:
        B, S, H = last_hidden.shape
        own = (anchors[:, :, None] + torch.arange(block_size, device=anchors.device)).clamp(max=S - 1)
        index = own.view(B, -1, 1).expand(-1, -1, H)  # [B, N·bs, H]
        teacher = last_hidden.gather(1, index).view(B, anchors.shape[1], block_size, H)
    return DSparkTargets(labels=base.labels, binary=binary, weights=weights, prev_ids=base.prev_ids,
                         teacher_hidden=teacher)
