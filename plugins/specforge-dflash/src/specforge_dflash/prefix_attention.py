"""DFlash block attention that reads only the context each block can see, with flash-style recomputation.

Block n sees the context before its anchor a_n (a band of it on sliding layers) and its own bs
slots. A sample's kept blocks are sorted by anchor and cut into groups of about ``GROUP_ROWS``
query rows; a group is scored against the context up to its last anchor only (columns past a
row's own anchor are masked) and against its own blocks, so the work is ~N·bs·S/2 scores, not
N·bs·S. Forward keeps the output and each row's log-sum-exp; backward recomputes one group's
probabilities at a time. Nothing of size scores × heads outlives its group: memory is
O(B·heads·(S + N·bs)·D), linear in the sequence length for any number of anchors.

Queries may cover only the slots >= ``first_slot`` of each block (the last DFlash layer skips
slot 0, which no loss reads); every slot stays a key. Plain tensor ops (matmul, softmax, exp),
so the same code runs on any device; half-precision inputs (autocast) are computed in float32
and the results cast back. Unkept blocks output zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specforge_dflash import mask as masks

GROUP_ROWS = 64  # query rows per group: small enough to waste little context, large enough for matmul
HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Group:
    """Consecutive blocks [start, stop) of a sample's anchor-sorted kept blocks."""

    start: int
    stop: int
    first_anchor: int
    last_anchor: int


@dataclass(frozen=True)
class SamplePlan:
    """One sample's kept blocks in anchor order and their groups."""

    blocks: torch.Tensor  # [M] indices n of the kept blocks, sorted by anchor
    anchors: torch.Tensor  # [M] their anchors, ascending
    groups: tuple[Group, ...]
    in_order: bool  # blocks == 0..M-1 (as ``sample_anchors`` lays them out): no gather needed

    def rows(self, width: int) -> torch.Tensor | None:
        """[M·width] rows n·width + j of these blocks in a layout of ``width`` rows per block;
        None when they are simply the first M·width rows."""
        if self.in_order:
            return None
        return (self.blocks[:, None] * width + torch.arange(width, device=self.blocks.device)).flatten()


def plan_prefix(anchors: torch.Tensor, keep: torch.Tensor, block_size: int,
                group_rows: int = GROUP_ROWS) -> tuple[SamplePlan, ...]:
    """Sort each sample's kept blocks by anchor (already true for ``sample_anchors``) and group them."""
    per_group = max(1, group_rows // block_size)
    plans = []
    for b in range(anchors.shape[0]):
        kept = keep[b].nonzero().squeeze(1)  # [M]
        a, order = anchors[b, kept].sort(stable=True)
        a_list, M = a.tolist(), len(kept)
        groups = tuple(Group(s, min(s + per_group, M), a_list[s], a_list[min(s + per_group, M) - 1])
                       for s in range(0, M, per_group))
        blocks = kept[order]
        in_order = bool(torch.equal(blocks, torch.arange(M, device=blocks.device)))
        plans.append(SamplePlan(blocks, a, groups, in_order))
    return tuple(plans)


def prefix_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, k_blk: torch.Tensor,
                     v_blk: torch.Tensor, plan: tuple[SamplePlan, ...], block_size: int, window: int | None,
                     scale: float, first_slot: int = 0) -> torch.Tensor:
    """q [B, heads, N·(bs - first_slot), D] (slots first_slot.. of each block), k_blk/v_blk
    [B, kv_heads, N·bs, D], k_ctx/v_ctx [B, kv_heads, S, D] -> [B, heads, N·(bs - first_slot), D];
    equal to softmax attention under ``mask.context_visibility`` and ``mask.block_visibility``
    (causal blocks on sliding layers) on those query rows."""
    shape = _Shape(block_size, first_slot, window)
    return _PrefixAttention.apply(q, k_ctx, v_ctx, k_blk, v_blk, plan, shape, scale)


@dataclass(frozen=True)
class _Shape:
    """Block geometry of one call: bs slots, queries from ``first_slot``, window (None: full)."""

    bs: int
    first_slot: int
    window: int | None

    @property
    def queries(self) -> int:
        return self.bs - self.first_slot


@dataclass(frozen=True)
class _Span:
    """The context columns one group reads, [lo, hi), of which [cut, hi) need a mask."""

    lo: int
    hi: int
    cut: int


def _span(group: Group, shape: _Shape) -> _Span:
    if shape.window is None:  # every row sees [0, its anchor): only columns past the first anchor vary
        return _Span(0, group.last_anchor, group.first_anchor)
    lo = max(0, group.first_anchor + shape.first_slot - (shape.window - 1))  # the lowest slot's band
    return _Span(lo, max(lo, group.last_anchor), lo)


def _acc(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in HALF else t.dtype


def _sorted(x: torch.Tensor, rows: torch.Tensor | None, count: int, hkv: int, acc: torch.dtype) -> torch.Tensor:
    """One sample's [Hq, L, ...] -> its ``count`` kept rows (``rows``, or the first ones) as
    [Hkv, count, rep, ...] (query head h uses kv head h // rep) in ``acc``, contiguous, so that
    every group is a slice of rows."""
    x = x.transpose(0, 1)  # [L, Hq, ...]
    x = (x[:count] if rows is None else x.index_select(0, rows)).to(acc)
    x = x.reshape(count, hkv, -1, *x.shape[2:])  # [count, Hkv, rep, ...]
    return x.transpose(0, 1).contiguous()


def _scatter(dst: torch.Tensor, rows: torch.Tensor | None, src: torch.Tensor) -> None:
    """dst [H, L, ...] rows (or the first ones) <- src [Hkv, count, rep, ...] (``_sorted``'s layout)."""
    src = src.transpose(1, 2).reshape(-1, src.shape[1], *src.shape[3:])  # [H, count, ...]
    if rows is None:
        dst[:, :src.shape[1]] = src
    else:
        dst.index_copy_(1, rows, src)


def _softmax_lse(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax over the last dim, its log-sum-exp) from one fused softmax and two maxima (no
    indices, which make a reduction many times slower on CPU): lse = max s - log max p, read off
    the top entry, whose probability (>= 1/L) never underflows."""
    p = torch.softmax(s, -1)
    return p, s.amax(-1) - p.amax(-1).log()


def _masked(s: torch.Tensor, span: _Span, hidden: torch.Tensor) -> torch.Tensor:
    """Context scores [Hkv, R·rep, L] with the ``hidden`` [R, >= hi - cut] entries of columns
    [cut, hi) at the dtype's minimum (finite: rows without a visible key stay finite, weight 0)."""
    tail = s.view(s.shape[0], hidden.shape[0], -1, span.hi - span.lo)[..., span.cut - span.lo:]
    tail.masked_fill_(hidden[:, None, :span.hi - span.cut], torch.finfo(s.dtype).min)  # [Hkv, R, rep, hi - cut]
    return s


def _tail_masks(sample: SamplePlan, shape: _Shape) -> tuple[list[_Span], torch.Tensor]:
    """Each group's span and, for all query rows at once, which columns of their group's masked
    tail they may not see: bool [M·bq, widest tail]."""
    spans = [_span(g, shape) for g in sample.groups]
    cuts = torch.tensor([sp.cut for g, sp in zip(sample.groups, spans) for _ in range(g.stop - g.start)],
                        device=sample.anchors.device)  # [M]
    width = max(sp.hi - sp.cut for sp in spans)
    return spans, masks.grouped_context_hidden(sample.anchors, cuts, width, shape.bs, shape.window, shape.first_slot)


def _block_scores(qs: torch.Tensor, kb: torch.Tensor, shape: _Shape) -> torch.Tensor:
    """Every kept block's queries qs [Hkv, M·bq, rep, D] against its own keys kb [Hkv, M·bs, 1, D]:
    [Hkv, M, bq·rep, bs] (row = (slot - first_slot)·rep + r)."""
    Hkv, MQ, rep, D = qs.shape
    M = MQ // shape.queries
    sb = torch.matmul(qs.view(Hkv, M, -1, D), kb.view(Hkv, M, shape.bs, D).transpose(-1, -2))
    if shape.window is not None:  # causal inside the block
        visible = masks.slot_visibility(shape.bs, True, qs.device)[shape.first_slot:]  # [bq, bs]
        sb.masked_fill_(~visible.repeat_interleave(rep, 0), torch.finfo(sb.dtype).min)
    return sb


class _PrefixAttention(torch.autograd.Function):
    """Forward: the block part for all kept blocks at once, the context part group by group, merged
    by log-sum-exp. Backward recomputes P = exp(S - lse) and uses dS = P ∘ (dO·Vᵀ - rowsum(dO ∘ O))."""

    @staticmethod
    def forward(ctx, q, k_ctx, v_ctx, k_blk, v_blk, plan, shape, scale):
        acc = _acc(q)
        Hkv, D, bq, bs = k_ctx.shape[1], q.shape[-1], shape.queries, shape.bs
        out = torch.zeros_like(q, dtype=acc)
        lse = q.new_zeros(q.shape[:3], dtype=acc)
        tails = []  # per sample: the groups' spans and masked tails, reused by backward
        with torch.autocast(q.device.type, enabled=False):
            for b, sample in enumerate(plan):
                if not sample.groups:
                    tails.append(None)
                    continue
                M = len(sample.anchors)
                qrows, krows = sample.rows(bq), sample.rows(bs)
                qs = _sorted(q[b], qrows, M * bq, Hkv, acc) * scale  # [Hkv, M·bq, rep, D]
                kb, vb = (_sorted(t[b], krows, M * bs, Hkv, acc) for t in (k_blk, v_blk))  # [Hkv, M·bs, 1, D]
                k, v = (t[b].to(acc).contiguous() for t in (k_ctx, v_ctx))  # [Hkv, S, D]
                rep = qs.shape[2]
                pb, lse_b = _softmax_lse(_block_scores(qs, kb, shape))  # [Hkv, M, bq·rep, bs]
                o_b = torch.matmul(pb, vb.view(Hkv, M, bs, D)).view(qs.shape)  # [Hkv, M·bq, rep, D]
                lse_b = lse_b.view(qs.shape[:3])
                o_c = torch.zeros_like(o_b)
                lse_c = torch.full_like(lse_b, float("-inf"))  # rows that read no context
                spans, hidden = _tail_masks(sample, shape)  # hidden [M·bq, widest tail]
                tails.append((spans, hidden))
                for group, span in zip(sample.groups, spans):
                    if span.hi <= span.lo:
                        continue
                    r0, r1 = group.start * bq, group.stop * bq
                    qg = qs[:, r0:r1].view(Hkv, -1, D)  # [Hkv, R·rep, D]
                    s = _masked(torch.bmm(qg, k[:, span.lo:span.hi].transpose(-1, -2)), span, hidden[r0:r1])
                    p, lse_g = _softmax_lse(s)  # [Hkv, R·rep, L]
                    o_c[:, r0:r1] = torch.bmm(p, v[:, span.lo:span.hi]).view(Hkv, -1, rep, D)
                    lse_c[:, r0:r1] = lse_g.view(Hkv, -1, rep)
                both = torch.logaddexp(lse_b, lse_c)  # [Hkv, M·bq, rep]
                _scatter(out[b], qrows, o_b * (lse_b - both).exp()[..., None] + o_c * (lse_c - both).exp()[..., None])
                _scatter(lse[b], qrows, both)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k_ctx, v_ctx, k_blk, v_blk, out, lse)
        ctx.plan, ctx.tails, ctx.shape, ctx.scale = plan, tails, shape, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k_ctx, v_ctx, k_blk, v_blk, out, lse = ctx.saved_tensors
        shape, scale = ctx.shape, ctx.scale
        acc = _acc(q)
        Hkv, D, bq, bs = k_ctx.shape[1], q.shape[-1], shape.queries, shape.bs
        dq = torch.zeros_like(q, dtype=acc)
        dk, dv = torch.zeros_like(k_ctx, dtype=acc), torch.zeros_like(v_ctx, dtype=acc)
        dkb, dvb = torch.zeros_like(k_blk, dtype=acc), torch.zeros_like(v_blk, dtype=acc)
        with torch.autocast(q.device.type, enabled=False):
            grad_out = grad_out.to(acc)
            delta = (grad_out * out.to(acc)).sum(-1)  # [B, Hq, Q]: rowsum(dO ∘ O)
            for b, (sample, tail) in enumerate(zip(ctx.plan, ctx.tails)):
                if tail is None:
                    continue
                M, (spans, hidden) = len(sample.anchors), tail
                qrows, krows = sample.rows(bq), sample.rows(bs)
                qs = _sorted(q[b], qrows, M * bq, Hkv, acc) * scale  # [Hkv, M·bq, rep, D]
                do = _sorted(grad_out[b], qrows, M * bq, Hkv, acc)
                neg_lse, neg_dlt = (-_sorted(t[b], qrows, M * bq, Hkv, acc) for t in (lse, delta))  # [Hkv, M·bq, rep]
                kb, vb = (_sorted(t[b], krows, M * bs, Hkv, acc) for t in (k_blk, v_blk))  # [Hkv, M·bs, 1, D]
                k, v = (t[b].to(acc).contiguous() for t in (k_ctx, v_ctx))  # [Hkv, S, D]
                rep = qs.shape[2]
                blocks = (Hkv, M, bq * rep)  # rows in the block layout of _block_scores
                # own blocks, [Hkv, M, bq·rep, bs]: P = exp(S - lse), dS = P ∘ (dO·Vᵀ - Δ)
                pb = _block_scores(qs, kb, shape).add_(neg_lse.view(*blocks, 1)).exp_()
                dob, kbv, vbv = do.view(*blocks, D), kb.view(Hkv, M, bs, D), vb.view(Hkv, M, bs, D)
                dsb = torch.matmul(dob, vbv.transpose(-1, -2)).add_(neg_dlt.view(*blocks, 1)).mul_(pb)
                dq_s = torch.matmul(dsb, kbv).view(qs.shape)
                dkb_s = torch.matmul(dsb.transpose(-1, -2), qs.view(*blocks, D))  # [Hkv, M, bs, D]
                dvb_s = torch.matmul(pb.transpose(-1, -2), dob)
                for group, span in zip(sample.groups, spans):
                    if span.hi <= span.lo:
                        continue
                    lo, hi, r0, r1 = span.lo, span.hi, group.start * bq, group.stop * bq
                    qg, dog = qs[:, r0:r1].view(Hkv, -1, D), do[:, r0:r1].view(Hkv, -1, D)  # [Hkv, R·rep, D]
                    nl, nd = neg_lse[:, r0:r1].reshape(Hkv, -1, 1), neg_dlt[:, r0:r1].reshape(Hkv, -1, 1)
                    p = _masked(torch.baddbmm(nl, qg, k[:, lo:hi].transpose(-1, -2)), span, hidden[r0:r1]).exp_()
                    dv[b, :, lo:hi] += torch.bmm(p.transpose(-1, -2), dog)  # p [Hkv, R·rep, L]
                    ds = torch.baddbmm(nd, dog, v[:, lo:hi].transpose(-1, -2)).mul_(p)
                    dq_s[:, r0:r1] += torch.bmm(ds, k[:, lo:hi]).view(Hkv, -1, rep, D)
                    dk[b, :, lo:hi] += torch.bmm(ds.transpose(-1, -2), qg)
                _scatter(dq[b], qrows, dq_s.mul_(scale))
                _scatter(dkb[b], krows, dkb_s.reshape(Hkv, -1, 1, D))
                _scatter(dvb[b], krows, dvb_s.reshape(Hkv, -1, 1, D))
        return (dq.to(q.dtype), dk.to(k_ctx.dtype), dv.to(v_ctx.dtype), dkb.to(k_blk.dtype), dvb.to(v_blk.dtype),
                None, None, None)
