"""EAGLE3's training-time-test (TTT) attention: causal over step-0 keys, plus one "diagonal" key per
later step at the query's own position.

``ttt_attention`` (training and drafting) runs the causal part of each step as one fused flash
attention kernel (CPU and CUDA), so no score matrix exists outside the kernel and backward
recomputes it; grouped-query heads are not copied. The k diagonal keys of a query are few; their
log-sum-exp and softmax average of values (``diagonal_summary``) are merged with the kernel's:

* ``merge`` (CPU): the kernel returns its log-sum-exp, the two parts are combined by their
  softmax weights, and backward calls the kernel's own backward with the combined output and
  the combined log-sum-exp, which is exactly the gradient of one softmax over both key sets.
* ``sink`` (any device, public ``scaled_dot_product_attention`` only): one extra key seen by
  every query, whose score is the query's diagonal log-sum-exp and whose value slot returns its
  softmax weight; queries and keys get a few extra head dimensions for that (64 -> 72), and a key
  padding mask other than right padding is one more (a -1e4 bias on padded keys).

``diagonal_attention`` is the dense definition with an explicit boolean mask (any mask): the
reference both fused paths are tested against, and the path a caller gets by passing ``mask0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from specforge.api.nn import apply_rotary, repeat_kv

HALF = (torch.float16, torch.bfloat16)
EXTRA_DIMS = 3  # sink score (high part), sink score (low part, half precision only), key padding bias
NEG = -1.0e4  # a score no real key reaches: exp underflows to 0 in every float type, finite in fp16


@dataclass
class TTTCache:
    """Keys/values of one TTT unroll: step 0's (all positions) and each later step's (one per query).

    ``key_mask`` [B, Sk] marks real step-0 keys (None: all real, or right padding only: padded
    queries then see padded keys, which changes nothing at real positions). ``extended`` holds
    the step-0 keys/values widened with the sink, built once per unroll and shared by its steps;
    ``weights`` the concatenated projection weights, likewise. ``past`` (decoding only) are step-0
    keys/values of positions drafted from in earlier rounds: the first call's keys extend them.
    """

    k0: torch.Tensor | None = None  # [B, Hkv, Sk, D]
    v0: torch.Tensor | None = None  # [B, Hkv, Sk, D]
    extra_k: list[torch.Tensor] = field(default_factory=list)  # each [B, Hkv, Sq, D]
    extra_v: list[torch.Tensor] = field(default_factory=list)
    key_mask: torch.Tensor | None = None  # [B, Sk] bool
    extended: tuple[torch.Tensor, torch.Tensor] | None = None  # [B, Hkv, Sk+1, Dp] each
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # see shared_weight
    past: tuple[torch.Tensor, torch.Tensor] | None = None  # [B, Hkv, Sp, D] x 2: drafting's earlier rounds

    def shared_weight(self, name: str, *parts: torch.Tensor) -> torch.Tensor:
        """``torch.cat(parts)`` made once per unroll (q/k/v, gate/up): one matmul per step, and one
        autograd node that sums the steps' weight gradients before splitting them."""
        if name not in self.weights:
            self.weights[name] = torch.cat(parts)
        return self.weights[name]


def diagonal_attention(q: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, extra_k: list[torch.Tensor],
                       extra_v: list[torch.Tensor], mask0: torch.Tensor) -> torch.Tensor:
    """Attention of q [B, h, Sq, D] over k0/v0 [B, h, Sk, D] (where ``mask0`` [B|1, 1, Sq, Sk] is
    True) and over extra_k[i]/extra_v[i] [B, h, Sq, D] at the query's own row; returns [B, h, Sq, D].

    Dense: materialises the [B, h, Sq, Sk] scores. The softmax runs in at least fp32.
    """
    work = torch.promote_types(q.dtype, torch.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores0 = torch.matmul(q, k0.transpose(-1, -2)).to(work) * scale  # [B, h, Sq, Sk]
    scores0 = scores0.masked_fill(~mask0, float("-inf"))
    if not extra_k:
        probs0 = torch.softmax(scores0, dim=-1).to(v0.dtype)
        return torch.matmul(probs0, v0)
    diag = torch.stack([(q * k).sum(-1) for k in extra_k], dim=-1).to(work) * scale  # [B, h, Sq, k]
    probs = torch.softmax(torch.cat([scores0, diag], dim=-1), dim=-1)  # [B, h, Sq, Sk+k]
    sk = k0.shape[-2]
    out = torch.matmul(probs[..., :sk].to(v0.dtype), v0)  # [B, h, Sq, D]
    for i, v in enumerate(extra_v):
        out = out + probs[..., sk + i, None].to(v.dtype) * v
    return out


def _kernel_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype SDPA computes in: the autocast dtype when autocast is on, else the input's."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def padded_head_dim(head_dim: int) -> int:
    """Head dim plus the extra dimensions, rounded up to a multiple of 8 (what fused kernels like)."""
    return -(-(head_dim + EXTRA_DIMS) // 8) * 8


def extend_keys(k0: torch.Tensor, v0: torch.Tensor, key_mask: torch.Tensor | None,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """k0/v0 [B, Hkv, Sk, D] -> [B, Hkv, Sk+1, Dp] in ``dtype``: row 0 is the sink (key: 1/scale at
    the two score dimensions, value: 1 at dimension D), then the keys with zeros (or the padding
    bias ``NEG`` at dimension D+2 for padded keys)."""
    b, hkv, sk, d = k0.shape
    width = padded_head_dim(d)
    inv_scale = math.sqrt(d)
    k_tail = k0.new_zeros(b, hkv, sk, width - d, dtype=dtype)
    if key_mask is not None:
        k_tail[..., 2] = torch.where(key_mask, 0.0, NEG)[:, None, :].to(dtype)
    keys = torch.cat([k0.to(dtype), k_tail], dim=-1)  # [B, Hkv, Sk, Dp]
    values = F.pad(v0.to(dtype), (0, width - d))
    sink_k = keys.new_zeros(b, hkv, 1, width)
    sink_k[..., d:d + 2] = inv_scale
    sink_v = keys.new_zeros(b, hkv, 1, width)
    sink_v[..., d] = 1.0
    return torch.cat([sink_k, keys], dim=2), torch.cat([sink_v, values], dim=2)


def diagonal_summary(q: torch.Tensor, extra_k: list[torch.Tensor],
                     extra_v: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-sum-exp of the diagonal scores [B, h, Sq], their softmax average of values [B, h, Sq, D]),
    both in at least fp32. q [B, h, Sq, D]; extra_k/extra_v: k tensors [B, Hkv, Sq, D].

    One key at a time, by broadcasting: autograd then keeps the cache's own tensors (shared by
    every later step), not a stacked copy per step.
    """
    h, d = q.shape[1], q.shape[3]
    hkv = extra_k[0].shape[1]
    work = torch.promote_types(q.dtype, torch.float32)
    qg = q.to(work).unflatten(1, (hkv, h // hkv))  # [B, Hkv, rep, Sq, D]
    scores = torch.stack([(qg * k.to(work)[:, :, None]).sum(-1) for k in extra_k], dim=-1)  # [B, Hkv, rep, Sq, k]
    scores = scores / math.sqrt(d)
    weights = torch.softmax(scores, dim=-1)
    mean_v = sum(weights[..., i, None] * v.to(work)[:, :, None] for i, v in enumerate(extra_v))
    return torch.logsumexp(scores, dim=-1).flatten(1, 2), mean_v.flatten(1, 2)


def _cpu_flash_kernels() -> tuple | None:
    """The CPU flash attention forward (returning its log-sum-exp) and backward, if this torch has them."""
    ops = torch.ops.aten
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu") and hasattr(
            ops, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        return ops._scaled_dot_product_flash_attention_for_cpu, ops._scaled_dot_product_flash_attention_for_cpu_backward
    return None


class _MergedFlash(torch.autograd.Function):
    """Causal flash attention over the step-0 keys, merged with the diagonal part by log-sum-exp.

    With w_c = Z_c / Z and w_d = Z_d / Z (Z = Z_c + Z_d), out = w_c·o_c + w_d·ū. Backward: the
    kernel's backward at (out, log Z) gives the causal keys' exact share of the gradient of the one
    softmax (dS = P·(dO·v − dO·out)); ū and log Z_d get w_d·dO and w_d·dO·(ū − out).
    """

    @staticmethod
    def forward(ctx, q, k0, v0, lse_d, mean_v, causal):
        forward_kernel, _ = _cpu_flash_kernels()
        scale = q.shape[-1] ** -0.5
        o_c, lse_c = forward_kernel(q, k0, v0, 0.0, causal, scale=scale)  # [B, h, Sq, D], [B, h, Sq]
        lse = torch.logaddexp(lse_c.to(lse_d.dtype), lse_d)
        w_c, w_d = torch.exp(lse_c - lse)[..., None], torch.exp(lse_d - lse)[..., None]
        out = (w_c * o_c.to(w_c.dtype) + w_d * mean_v).to(q.dtype)
        ctx.save_for_backward(q, k0, v0, out, lse.to(lse_c.dtype), w_d, mean_v)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k0, v0, out, lse, w_d, mean_v = ctx.saved_tensors
        _, backward_kernel = _cpu_flash_kernels()
        grad = grad.contiguous()
        dq, dk, dv = backward_kernel(grad, q, k0, v0, out, lse, 0.0, ctx.causal, scale=ctx.scale)
        d_mean = w_d * grad.to(w_d.dtype)
        d_lse = (d_mean * (mean_v - out.to(w_d.dtype))).sum(-1)
        return dq, dk, dv, d_lse, d_mean, None


def ttt_attention(q: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, extra_k: list[torch.Tensor],
                  extra_v: list[torch.Tensor], key_mask: torch.Tensor | None = None,
                  extended: tuple[torch.Tensor, torch.Tensor] | None = None,
                  backend: str = "auto") -> torch.Tensor:
    """What ``diagonal_attention`` computes for the TTT masks, fused: q [B, h, Sq, D] over k0/v0
    [B, Hkv, Sk, D] and the diagonal extra_k/extra_v [B, Hkv, Sq, D] -> [B, h, Sq, D].

    Sq == Sk: query t sees step-0 keys 0..t (training, and the first drafting step); Sq == 1: the
    query is the last row and sees every step-0 key (later drafting steps). ``key_mask`` [B, Sk]
    hides padded keys. ``backend``: "merge", "sink", or "auto" (merge on CPU without a key mask,
    else sink); ``extended`` is ``extend_keys``'s result for the sink, when the caller keeps it.
    """
    sq, sk = q.shape[2], k0.shape[2]
    if sq not in (sk, 1):
        raise ValueError(f"TTT attention takes Sq == Sk (causal) or Sq == 1 (last row), got {sq} and {sk}")
    causal = sq == sk and sq > 1
    if not extra_k and key_mask is None:
        return F.scaled_dot_product_attention(q, k0, v0, is_causal=causal, enable_gqa=True)
    if backend == "auto":
        backend = "merge" if q.is_cpu and key_mask is None and _cpu_flash_kernels() else "sink"
    if backend == "merge":
        if key_mask is not None or not extra_k:
            raise ValueError("the merge backend takes diagonal keys and no key mask; use the sink backend")
        dtype = _kernel_dtype(q)
        lse_d, mean_v = diagonal_summary(q, extra_k, extra_v)
        return _MergedFlash.apply(q.to(dtype), k0.to(dtype), v0.to(dtype), lse_d, mean_v, causal)
    if backend != "sink":
        raise ValueError(f"unknown TTT attention backend {backend!r}; use auto, merge or sink")
    return _sink_attention(q, k0, v0, extra_k, extra_v, key_mask, extended, causal)


def _sink_attention(q: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, extra_k: list[torch.Tensor],
                    extra_v: list[torch.Tensor], key_mask: torch.Tensor | None,
                    extended: tuple[torch.Tensor, torch.Tensor] | None, causal: bool) -> torch.Tensor:
    """The sink backend of ``ttt_attention`` (see the module docstring)."""
    b, h, sq, d = q.shape
    dtype = _kernel_dtype(q)
    if extended is None:
        extended = extend_keys(k0, v0, key_mask, dtype)
    keys, values = extended
    width = keys.shape[-1]
    tail = q.new_zeros(b, h, sq, width - d, dtype=dtype)  # [B, h, Sq, Dp-D]
    if key_mask is not None:
        tail[..., 2] = math.sqrt(d)  # times the keys' bias: NEG on padded keys, 0 elsewhere
    if extra_k:
        lse, mean_v = diagonal_summary(q, extra_k, extra_v)
        high = lse.to(dtype)
        low = (lse - high.to(lse.dtype)).to(dtype) if dtype in HALF else torch.zeros_like(high)
        scores = torch.stack([high, low], dim=-1)  # [B, h, Sq, 2]: the sink's score, split for bf16
    else:
        scores = q.new_full((b, h, sq, 2), NEG / 2, dtype=dtype)  # no diagonal keys: the sink is off
    tail = torch.cat([scores, tail[..., 2:]], dim=-1)
    rows = torch.cat([q.to(dtype), tail], dim=-1)  # [B, h, Sq, Dp]
    rows = F.pad(rows, (0, 0, 1, 0))  # a zero query row first: row t+1 then sees sink + keys 0..t
    out = F.scaled_dot_product_attention(rows, keys, values, is_causal=causal, scale=1.0 / math.sqrt(d),
                                         enable_gqa=True)[:, :, 1:]  # [B, h, Sq, Dp]
    if not extra_k:
        return out[..., :d]
    return out[..., :d] + out[..., d:d + 1] * mean_v.to(out.dtype)


class Eagle3Attention(nn.Module):
    """Self-attention of the EAGLE3 midlayer: q/k/v read [embed ; hidden] (2H wide), no biases."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_attention_heads {num_heads} is not a multiple of "
                             f"num_key_value_heads {num_kv_heads}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(2 * hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(2 * hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(2 * hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: TTTCache,
                mask0: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, Sq, 2H]; cos/sin [B, Sq, D] at this step's positions. The first call of an unroll
        fills the step-0 keys; later calls add one diagonal key per query. ``mask0`` [B|1, 1, Sq, Sk]
        selects the dense path with that explicit mask; None the fused TTT masks."""
        b, s, _ = x.shape
        h, hkv = self.num_heads, self.num_kv_heads
        # one projection for q, k and v (one larger matmul forward and backward), one rotary for q and k
        weight = cache.shared_weight("qkv", self.q_proj.weight, self.k_proj.weight, self.v_proj.weight)
        qkv = F.linear(x, weight).view(b, s, h + 2 * hkv, self.head_dim).transpose(1, 2)  # [B, h+2Hkv, Sq, D]
        qk = apply_rotary(qkv[:, :h + hkv], cos, sin)
        # v copied out: a view would keep the whole projection alive in the cache and for backward
        q, k, v = qk[:, :h], qk[:, h:], qkv[:, h + hkv:].contiguous()  # [B, h, Sq, D], [B, Hkv, Sq, D] x 2
        if cache.k0 is None and cache.past is not None:
            cache.k0, cache.v0 = torch.cat([cache.past[0], k], dim=2), torch.cat([cache.past[1], v], dim=2)
        elif cache.k0 is None:
            cache.k0, cache.v0 = k, v
        else:
            cache.extra_k.append(k)
            cache.extra_v.append(v)
        if mask0 is not None:
            rep = self.num_heads // self.num_kv_heads
            out = diagonal_attention(q, repeat_kv(cache.k0, rep), repeat_kv(cache.v0, rep),
                                     [repeat_kv(t, rep) for t in cache.extra_k],
                                     [repeat_kv(t, rep) for t in cache.extra_v], mask0)
        else:
            sink = not (q.is_cpu and cache.key_mask is None and _cpu_flash_kernels())
            if sink and cache.extended is None and (cache.extra_k or cache.key_mask is not None):
                cache.extended = extend_keys(cache.k0, cache.v0, cache.key_mask, _kernel_dtype(q))
            out = ttt_attention(q, cache.k0, cache.v0, cache.extra_k, cache.extra_v, cache.key_mask,
                                cache.extended, backend="sink" if sink else "merge")
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))
