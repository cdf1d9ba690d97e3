"""Anchor sampling and the noise blocks built on them.

An anchor is a supervised position whose next token is supervised too (DFlash, arXiv 2602.06036).

The random draw is seeded from (sample content, optimizer step, micro-step), so a resumed run
draws exactly the anchors the interrupted one would have, on any device and any rank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def content_hash(ids: Sequence[int]) -> int:
    """A stable 63-bit hash of a token sequence (the sample's part of the anchor seed)."""
    data = ",".join(map(str, ids)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def anchor_seed(sample_hash: int, step: int, micro_step: int) -> int:
    data = f"dflash-anchors/{sample_hash}/{step}/{micro_step}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def valid_anchor_positions(loss_mask: torch.Tensor) -> torch.Tensor:
    """Bool [B, S]: p is an anchor candidate iff m_p and m_{p+1} (so slot 1 has a label)."""
    m = loss_mask > 0.5
    valid = torch.zeros_like(m)
    valid[:, :-1] = m[:, :-1] & m[:, 1:]
    return valid


def sample_anchors(loss_mask: torch.Tensor, num_anchors: int,
                   seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``num_anchors`` distinct valid anchors per sample, sorted: (anchors [B, N], keep [B, N]).

    N = min(num_anchors, most valid positions in any sample); rows with fewer candidates are
    padded with ``keep=False`` blocks at anchor 0.
    """
    B, S = loss_mask.shape
    valid = valid_anchor_positions(loss_mask)  # [B, S]
    width = min(num_anchors, int(valid.sum(1).max().item()) if B else 0)
    if width == 0:
        raise ValueError("no sample in this batch has two consecutive loss-mask tokens, so DFlash has no "
                         "anchor to train on; drop samples with fewer than two supervised tokens in a row")
    scores = torch.stack([torch.rand(S, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    scores = scores.to(loss_mask.device).masked_fill(~valid, 2.0)  # invalid sorts last
    picked_scores, picked = scores.topk(width, dim=1, largest=False)  # a uniform subset of the valid
    keep = picked_scores < 2.0
    order_key = torch.where(keep, picked, S)  # padding after every real anchor
    sorted_key, _ = order_key.sort(dim=1)
    keep = sorted_key < S
    anchors = torch.where(keep, sorted_key, 0)
    return anchors, keep


def noise_blocks(input_ids: torch.Tensor, anchors: torch.Tensor, keep: torch.Tensor, block_size: int,
                 mask_token_id: int) -> torch.Tensor:
    """Block token ids [B, N·bs]: ``[x_p, MASK, ..., MASK]`` per kept block, all MASK otherwise."""
    B, N = anchors.shape
    blocks = torch.full((B, N, block_size), mask_token_id, dtype=torch.long, device=input_ids.device)
    first = input_ids.gather(1, anchors).long()  # [B, N]
    blocks[:, :, 0] = torch.where(keep, first, mask_token_id)
    return blocks.view(B, N * block_size)


def block_positions(anchors: torch.Tensor, block_size: int) -> torch.Tensor:
    """Position ids [B, N·bs] of the block slots: anchor + 0..bs-1."""
    slots = torch.arange(block_size, device=anchors.device)
    return (anchors[:, :, None] + slots).flatten(1)
