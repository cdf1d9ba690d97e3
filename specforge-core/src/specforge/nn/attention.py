"""Attention helpers shared by drafts: GQA key/value repetition and boolean masks."""

from __future__ import annotations

import torch


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, Hkv*n_rep, S, D]: each key/value head serves ``n_rep`` query heads."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def causal_mask(attention_mask: torch.Tensor | None, seq_len: int,
                device: torch.device | None = None) -> torch.Tensor:
    """Boolean [B|1, 1, S, S], True where query t may see key t' (t' <= t and t' is a real token).

    ``attention_mask`` [B, S] marks real tokens (1) and padding (0); None means all real.
    """
    if attention_mask is not None:
        device = attention_mask.device
    allowed = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()  # [S, S]
    allowed = allowed[None, None]  # [1, 1, S, S]
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]  # [B, 1, S, S]
    return allowed
