"""The Domino logit correction: base logits + MLP([draft hidden ; GRU(previous tokens)]).

The GRU reads the target embeddings of the block's earlier tokens (ground truth in training,
the draft's own picks when decoding), so slot j's correction depends only on tokens before
its label. ``correction_start`` slots at the head of the block keep the base logits.
"""

from __future__ import annotations

import torch
from torch import nn


def build_prefix_gru(hidden_size: int, gru_hidden_dim: int) -> nn.GRU:
    return nn.GRU(hidden_size, gru_hidden_dim, num_layers=1, bias=False, batch_first=True)


def build_embed_proj(hidden_size: int, gru_hidden_dim: int, emb_dim: int, vocab_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_size + gru_hidden_dim, emb_dim, bias=False), nn.SiLU(),
                         nn.Linear(emb_dim, vocab_size, bias=False))


def prefix_states(gru: nn.GRU, prev_emb: torch.Tensor, shift_label: bool) -> torch.Tensor:
    """GRU summary used by each slot: [M, bs, G].

    shift_label: slot j uses g_j (GRU over e_0..e_j; slot j predicts x_{p+j+1}).
    otherwise:   slot j uses g_{j-1} (GRU over e_0..e_{j-1}; slot j predicts x_{p+j}); slot 0 gets zeros.
    """
    if shift_label:
        states, _ = gru(prev_emb)
        return states
    states, _ = gru(prev_emb[:, :-1])  # [M, bs-1, G]
    return torch.cat([states.new_zeros(states.shape[0], 1, states.shape[2]), states], dim=1)


def correction_features(hidden: torch.Tensor, prev_emb: torch.Tensor, gru: nn.GRU, embed_proj: nn.Sequential,
                        shift_label: bool, start: int) -> torch.Tensor:
    """The input of the correction's vocabulary projection, [M, bs, E]: SiLU(W1·[hidden ; GRU state])
    for slots >= ``start``, zeros before (so their correction is exactly 0)."""
    M, bs = hidden.shape[:2]
    emb_dim = embed_proj[-1].in_features
    if start >= bs:
        return hidden.new_zeros(M, bs, emb_dim)
    states = prefix_states(gru, prev_emb.to(hidden.dtype), shift_label)  # [M, bs, G]
    feats = embed_proj[:-1](torch.cat([hidden[:, start:], states[:, start:]], dim=-1))  # [M, bs-start, E]
    return torch.cat([feats.new_zeros(M, start, feats.shape[-1]), feats], dim=1)


def apply_correction(base_logits: torch.Tensor, hidden: torch.Tensor, prev_emb: torch.Tensor, gru: nn.GRU,
                     embed_proj: nn.Sequential, shift_label: bool, start: int) -> torch.Tensor:
    """base_logits [M, bs, V], hidden [M, bs, H], prev_emb [M, bs, H] -> final logits [M, bs, V]."""
    if start >= base_logits.shape[1]:
        return base_logits
    feats = correction_features(hidden, prev_emb, gru, embed_proj, shift_label, start)
    return base_logits + embed_proj[-1](feats)
