"""DFlash block attention: every block query against the shared context keys and its own block.

Three backends compute the same thing:
* ``prefix`` (any device, the default off CUDA): see ``prefix_attention``; each group of
  anchor-sorted blocks reads only the context before its last anchor, and backward recomputes
  probabilities group by group, so memory is linear in S and the work about half of ``blockwise``.
* ``blockwise`` (any device): the plain reference. Scores against the context [.., N·bs, S] and
  against the block [.., N, bs, bs], one softmax over both, probabilities kept for backward:
  B·heads·N·bs·(S+bs) elements (never N²·bs² or N·S², but N·bs·S).
* ``flex`` (CUDA): ``torch.nn.attention.flex_attention`` over the concatenated keys with a
  BlockMask built from the same predicate (mask.flex_mask_mod), compiled once per process.
Rows with no visible key (unkept blocks) output zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from specforge_dflash import mask as masks
from specforge_dflash.prefix_attention import SamplePlan, plan_prefix, prefix_attention

_compiled_flex = None
_compiled_block_mask = None


@dataclass
class AttentionPlan:
    """What one draft forward needs to attend, built once and shared by all layers."""

    backend: str  # "prefix" | "blockwise" | "flex"
    # blockwise: layer type -> (context visibility [B,N,bs,S], block visibility [B,N,bs,bs])
    visibility: dict[str, tuple[torch.Tensor, torch.Tensor]]
    # flex: layer type -> BlockMask over [N·bs, S + N·bs]
    block_masks: dict[str, object]
    block_size: int
    # prefix: each sample's anchor-sorted kept blocks and their groups; layer type -> window
    samples: tuple[SamplePlan, ...] = ()
    windows: dict[str, int | None] | None = None


def plan_attention(anchors: torch.Tensor, keep: torch.Tensor, context_len: int, block_size: int,
                   windows: dict[str, int | None], backend: str) -> AttentionPlan:
    """Masks for each layer type present (``windows`` maps type -> sliding window or None)."""
    if backend == "auto":
        backend = "flex" if anchors.is_cuda else "prefix"
    if backend == "prefix":
        return AttentionPlan(backend, {}, {}, block_size, plan_prefix(anchors, keep, block_size), dict(windows))
    visibility, block_masks = {}, {}
    for layer_type, window in windows.items():
        if backend == "flex":
            block_masks[layer_type] = _flex_block_mask(anchors, keep, context_len, block_size, window)
        else:
            visibility[layer_type] = (
                masks.context_visibility(anchors, keep, context_len, block_size, window),
                masks.block_visibility(keep, block_size, causal=window is not None))
    return AttentionPlan(backend, visibility, block_masks, block_size)


def attend(plan: AttentionPlan, layer_type: str, q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor,
           k_blk: torch.Tensor, v_blk: torch.Tensor, scale: float, first_slot: int = 0) -> torch.Tensor:
    """q [B, heads, N·(bs - first_slot), D] (each block's slots first_slot..bs-1), k_blk/v_blk
    [B, kv_heads, N·bs, D], k_ctx/v_ctx [B, kv_heads, S, D] -> [B, heads, N·(bs - first_slot), D]."""
    if plan.backend == "prefix":
        return prefix_attention(q, k_ctx, v_ctx, k_blk, v_blk, plan.samples, plan.block_size,
                                plan.windows[layer_type], scale, first_slot)
    if first_slot:  # the reference backends attend with every slot as a query; the extra rows are dropped
        B, H, _, D = q.shape
        bs = plan.block_size
        q = F.pad(q.view(B, H, -1, bs - first_slot, D), (0, 0, first_slot, 0)).view(B, H, -1, D)
        out = attend(plan, layer_type, q, k_ctx, v_ctx, k_blk, v_blk, scale)
        return out.view(B, H, -1, bs, D)[:, :, :, first_slot:].reshape(B, H, -1, D)
    if plan.backend == "flex":
        return flex_block_attention(q, k_ctx, v_ctx, k_blk, v_blk, plan.block_masks[layer_type], scale)
    ctx_vis, blk_vis = plan.visibility[layer_type]
    return blockwise_attention(q, k_ctx, v_ctx, k_blk, v_blk, ctx_vis, blk_vis, scale)


def blockwise_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, k_blk: torch.Tensor,
                        v_blk: torch.Tensor, ctx_vis: torch.Tensor, blk_vis: torch.Tensor,
                        scale: float) -> torch.Tensor:
    """Context part plus block part under one softmax; GQA by broadcasting, not copying."""
    B, Hq, Q, D = q.shape
    Hkv, S = k_ctx.shape[1], k_ctx.shape[2]
    N, bs = ctx_vis.shape[1], ctx_vis.shape[2]
    rep = Hq // Hkv
    qg = q.view(B, Hkv, rep, Q, D)
    s_ctx = torch.matmul(qg, k_ctx[:, :, None].transpose(-1, -2))  # [B, Hkv, rep, N·bs, S]
    s_ctx = s_ctx.view(B, Hkv, rep, N, bs, S)
    kb = k_blk.view(B, Hkv, 1, N, bs, D)
    s_blk = torch.matmul(qg.view(B, Hkv, rep, N, bs, D), kb.transpose(-1, -2))  # [B, Hkv, rep, N, bs, bs]
    scores = torch.cat([s_ctx, s_blk], dim=-1) * scale  # [B, Hkv, rep, N, bs, S+bs]
    visible = torch.cat([ctx_vis, blk_vis], dim=-1)[:, None, None]  # [B, 1, 1, N, bs, S+bs]
    # A finite minimum (not -inf) keeps fully masked rows finite in forward and backward.
    scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    acc = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
    probs = torch.softmax(scores, dim=-1, dtype=acc).to(q.dtype)
    out = torch.matmul(probs[..., :S].reshape(B, Hkv, rep, Q, S), v_ctx[:, :, None])  # [B, Hkv, rep, Q, D]
    vb = v_blk.view(B, Hkv, 1, N, bs, D)
    out = out + torch.matmul(probs[..., S:], vb).view(B, Hkv, rep, Q, D)
    row_valid = visible.any(-1).view(B, 1, 1, Q, 1)
    return (out * row_valid).view(B, Hq, Q, D)


def _flex(on_cuda: bool):
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention
    if not on_cuda:
        return flex_attention  # eager reference (CPU tests of the predicate)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)  # dynamic after the first new shape
    return _compiled_flex


def _flex_block_mask(anchors, keep, context_len, block_size, window):
    global _compiled_block_mask
    from torch.nn.attention.flex_attention import create_block_mask
    B, N = anchors.shape
    mask_mod = masks.flex_mask_mod(anchors, keep, context_len, block_size, window)
    build = create_block_mask  # eager: a dense boolean [B, 1, N·bs, S+N·bs] on the way (CPU tests)
    if anchors.is_cuda:
        if _compiled_block_mask is None:
            _compiled_block_mask = torch.compile(create_block_mask)  # block by block, no dense mask
        build = _compiled_block_mask
    return build(mask_mod, B, None, N * block_size, context_len + N * block_size, device=anchors.device)


def flex_block_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, k_blk: torch.Tensor,
                         v_blk: torch.Tensor, block_mask: object, scale: float) -> torch.Tensor:
    """Flex attention over context keys followed by block keys; rows without keys give zeros."""
    k = torch.cat([k_ctx, k_blk], dim=2)  # [B, Hkv, S+N·bs, D]
    v = torch.cat([v_ctx, v_blk], dim=2)
    return _flex(q.is_cuda)(q, k, v, block_mask=block_mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])
