"""P-EAGLE's decoder layers: an EAGLE3-style first layer (attention reads [norm(embedding) ;
norm(hidden)], 2·H wide) and standard Llama layers after it, all under one element mask.

Parameter names are the ones vLLM speculators' ``PEagleDraftModel`` saves (``input_layernorm``,
``hidden_norm``, ``self_attn.{q,k,v,o}_proj``, ``post_attention_layernorm``, ``mlp.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specforge.api.nn import RMSNorm, SwiGLUMLP, apply_rotary, repeat_kv
from specforge_peagle.config import PeagleConfig


class MaskedAttention(nn.Module):
    """Self-attention over the elements under an explicit boolean mask; no biases (Llama drafts)."""

    def __init__(self, input_size: int, cfg: PeagleConfig) -> None:
        super().__init__()
        if cfg.num_attention_heads % cfg.num_key_value_heads:
            raise ValueError(f"num_attention_heads {cfg.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads {cfg.num_key_value_heads}")
        self.num_heads, self.num_kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(input_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(input_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(input_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, N, in]; cos/sin [B, N, D]; mask [B, 1, N, N] -> [B, N, H]."""
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # [B, h, N, D]
        k = self.k_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, N, D]
        v = self.v_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        rep = self.num_heads // self.num_kv_heads
        out = F.scaled_dot_product_attention(q, repeat_kv(k, rep), repeat_kv(v, rep), attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class FirstLayer(nn.Module):
    """``g' = r + attn([norm(e) ; norm(g)])``, ``out = g' + mlp(norm(g'))``; r = g, or norm(g) with
    ``norm_before_residual``."""

    def __init__(self, cfg: PeagleConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.norm_before_residual = cfg.norm_before_residual
        self.input_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.hidden_norm = RMSNorm(h, cfg.rms_norm_eps)
        self.self_attn = MaskedAttention(2 * h, cfg)
        self.post_attention_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.mlp = SwiGLUMLP(h, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """embeds, hidden [B, N, H] -> [B, N, H]."""
        normed = self.hidden_norm(hidden)
        residual = normed if self.norm_before_residual else hidden
        x = torch.cat([self.input_layernorm(embeds), normed], dim=-1)  # [B, N, 2H]
        hidden = residual + self.self_attn(x, cos, sin, mask)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class StandardLayer(nn.Module):
    """A Llama decoder layer: ``h' = h + attn(norm(h))``, ``out = h' + mlp(norm(h'))``."""

    def __init__(self, cfg: PeagleConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.input_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.self_attn = MaskedAttention(h, cfg)
        self.post_attention_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.mlp = SwiGLUMLP(h, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), cos, sin, mask)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))
