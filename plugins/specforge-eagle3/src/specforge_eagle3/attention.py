"""EAGLE3's training-time-test attention: causal over step-0 keys, plus one "diagonal" key per
later step at the query's own position.

Never materialises the [B, heads, S, S*(k+1)] score matrix of a concatenated cache: the step-0
scores are [B, h, Sq, Sk] and the k diagonal scores [B, h, Sq, k]; one softmax runs over their
concatenation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from specforge.api.nn import apply_rotary, repeat_kv


@dataclass
class TTTCache:
    """Keys/values of one TTT unroll: step 0's (all positions) and each later step's (one per query)."""

    k0: torch.Tensor | None = None  # [B, Hkv, Sk, D]
    v0: torch.Tensor | None = None  # [B, Hkv, Sk, D]
    extra_k: list[torch.Tensor] = field(default_factory=list)  # each [B, Hkv, Sq, D]
    extra_v: list[torch.Tensor] = field(default_factory=list)


def diagonal_attention(q: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, extra_k: list[torch.Tensor],
                       extra_v: list[torch.Tensor], mask0: torch.Tensor) -> torch.Tensor:
    """Attention of q [B, h, Sq, D] over k0/v0 [B, h, Sk, D] (where ``mask0`` [B|1, 1, Sq, Sk] is
    True) and over extra_k[i]/extra_v[i] [B, h, Sq, D] at the query's own row; returns [B, h, Sq, D].

    The softmax runs in at least fp32.
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
                mask0: torch.Tensor) -> torch.Tensor:
        """x [B, Sq, 2H]; cos/sin [B, Sq, D] at this step's positions. The first call of an unroll
        fills the step-0 keys; later calls add one diagonal key per query."""
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)  # [B, h, Sq, D]
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, Sq, D]
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache.k0 is None:
            cache.k0, cache.v0 = k, v
        else:
            cache.extra_k.append(k)
            cache.extra_v.append(v)
        rep = self.num_heads // self.num_kv_heads
        out = diagonal_attention(q, repeat_kv(cache.k0, rep), repeat_kv(cache.v0, rep),
                                 [repeat_kv(t, rep) for t in cache.extra_k],
                                 [repeat_kv(t, rep) for t in cache.extra_v], mask0)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.num_heads * self.head_dim))
