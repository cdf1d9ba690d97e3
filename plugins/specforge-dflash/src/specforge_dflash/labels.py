"""What each block slot is trained to predict, and how much it counts.

DFlash labels are same-position (slot k predicts x_{p+k}, slot 0 unsupervised); Domino with
``shift_label`` predicts the next token (slot k -> x_{p+k+1}, every slot supervised). One
function serves both through ``label_shift`` / ``supervise_first_slot`` / ``decay_offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlockTargets:
    """Per block slot, all [B, N, bs]."""

    labels: torch.Tensor  # int64 token ids
    binary: torch.Tensor  # 1.0 where the slot is supervised
    weights: torch.Tensor  # binary times the slot decay
    prev_ids: torch.Tensor  # x_{p+k}: the ground-truth token at the slot's own position


def slot_decay(block_size: int, gamma: float | None, offset: int, device=None,
               dtype=torch.float32) -> torch.Tensor:
    """[bs]: exp(-max(k - offset, 0) / γ), or ones without γ."""
    k = torch.arange(block_size, device=device, dtype=dtype)
    if not gamma:
        return torch.ones_like(k)
    return torch.exp(-(k - offset).clamp(min=0) / gamma)


def block_targets(input_ids: torch.Tensor, loss_mask: torch.Tensor, anchors: torch.Tensor,
                  keep: torch.Tensor, block_size: int, *, gamma: float | None, label_shift: int = 0,
                  supervise_first_slot: bool = False, decay_offset: int = 1,
                  dtype=torch.float32) -> BlockTargets:
    """Labels and weights for blocks at ``anchors``: weight = keep · [idx < S] · m_idx · decay."""
    B, S = input_ids.shape
    N = anchors.shape[1]
    k = torch.arange(block_size, device=anchors.device)
    own = anchors[:, :, None] + k  # [B, N, bs]
    idx = own + label_shift
    in_range = idx < S
    flat = idx.clamp(max=S - 1).view(B, N * block_size)
    labels = input_ids.gather(1, flat).view(B, N, block_size).long()
    supervised = loss_mask.gather(1, flat).view(B, N, block_size) > 0.5
    binary = keep[:, :, None] & in_range & supervised
    if not supervise_first_slot:
        binary = binary & (k > 0)
    binary = binary.to(dtype)
    weights = binary * slot_decay(block_size, gamma, decay_offset, device=anchors.device, dtype=dtype)
    prev_ids = input_ids.gather(1, own.clamp(max=S - 1).view(B, -1)).view(B, N, block_size).long()
    return BlockTargets(labels=labels, binary=binary, weights=weights, prev_ids=prev_ids)
