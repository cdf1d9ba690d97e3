"""Torch building blocks for drafts (imports torch): norms, rotary embeddings, MLPs, masks."""

from __future__ import annotations

from specforge.nn.attention import causal_mask, repeat_kv
from specforge.nn.mlp import SwiGLUMLP, activation
from specforge.nn.norm import RMSNorm
from specforge.nn.rope import (
    RotaryEmbedding,
    apply_rotary,
    inverse_frequencies,
    rope_config_fields,
    rope_parameters,
    rotate_half,
)

__all__ = [
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLUMLP",
    "activation",
    "apply_rotary",
    "causal_mask",
    "inverse_frequencies",
    "repeat_kv",
    "rope_config_fields",
    "rope_parameters",
    "rotate_half",
]
