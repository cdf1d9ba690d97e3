"""Who a DFlash block query may attend to, as two small boolean masks or a flex predicate.

Query = slot j of block n (anchor a_n). Keys are the S context positions followed by the N·bs
block slots. A context key t is visible iff t < a_n (the anchor's own feature is not: at
inference the anchor is the not-yet-verified token), and on sliding layers also
t >= a_n + j - (W-1). A block key is visible iff it is in the same block (bidirectional on full
layers, key slot <= j on sliding layers). Unkept (padding) blocks see nothing.

Instead of one dense [N·bs, S + N·bs] mask, whose block-block part grows with N², the mask is
kept as a context part [B, N, bs, S] and a block part [B, N, bs, bs]: O(N·bs·(S+bs)) booleans.
The prefix backend builds the context part only on the columns where it varies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def context_visibility(anchors: torch.Tensor, keep: torch.Tensor, context_len: int, block_size: int,
                       window: int | None = None) -> torch.Tensor:
    """Bool [B, N, bs, S]: slot j of block n may see context position t."""
    t = torch.arange(context_len, device=anchors.device)  # [S]
    a = anchors[:, :, None, None]  # [B, N, 1, 1]
    visible = t < a  # [B, N, 1, S]
    if window is not None:
        j = torch.arange(block_size, device=anchors.device)[:, None]  # [bs, 1]
        visible = visible & (t >= a + j - (window - 1))  # [B, N, bs, S]
    visible = visible & keep[:, :, None, None]
    return visible.expand(*anchors.shape, block_size, context_len)


def slot_visibility(block_size: int, causal: bool, device=None) -> torch.Tensor:
    """Bool [bs, bs]: slot j of a kept block may see slot i of the same block."""
    base = torch.ones(block_size, block_size, dtype=torch.bool, device=device)
    return base.tril() if causal else base


def block_visibility(keep: torch.Tensor, block_size: int, causal: bool) -> torch.Tensor:
    """Bool [B, N, bs, bs]: slot j may see slot i of its own block."""
    return slot_visibility(block_size, causal, keep.device) & keep[:, :, None, None]


def grouped_context_hidden(anchors: torch.Tensor, starts: torch.Tensor, width: int, block_size: int,
                           window: int | None = None, first_slot: int = 0) -> torch.Tensor:
    """Bool [M·(bs - first_slot), width]: True where slot j >= ``first_slot`` of kept block m
    (anchor ``anchors[m]``) may NOT see context position ``starts[m] + c``; ``context_visibility``
    on a column range per block (each block's group reads its own range), negated."""
    q = block_size - first_slot
    c = torch.arange(width, device=anchors.device)  # [W]
    rel = (anchors - starts).repeat_interleave(q)[:, None]  # [M·q, 1]: the anchor, as a column
    hidden = c >= rel  # t >= a
    if window is not None:
        j = torch.arange(first_slot, block_size, device=anchors.device).repeat(anchors.shape[0])[:, None]
        hidden = hidden | (c < rel + j - (window - 1))  # t < a + j - (W-1)
    return hidden


def flex_mask_mod(anchors: torch.Tensor, keep: torch.Tensor, context_len: int, block_size: int,
                  window: int | None = None) -> Callable:
    """The same predicate over flat indices (query n·bs+j, key in [0, S+N·bs)) for flex attention."""
    S, bs = context_len, block_size

    def mask_mod(b, h, q_idx, kv_idx):
        n, j = q_idx // bs, q_idx % bs
        a = anchors[b, n]
        ctx = (kv_idx < S) & (kv_idx < a)
        if window is not None:
            ctx = ctx & (kv_idx >= a + j - (window - 1))
        slot = kv_idx - S
        blk = (kv_idx >= S) & (slot // bs == n)
        if window is not None:
            blk = blk & (slot % bs <= j)
        return keep[b, n] & (ctx | blk)

    return mask_mod
