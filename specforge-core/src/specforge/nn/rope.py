"""Rotary position embedding configured from a target's config (``rope_theta``/``rope_scaling``
or transformers v5 ``rope_parameters``).

The default variant is computed here in float64; every scaled variant (linear, llama3, yarn,
dynamic, longrope, ...) reuses transformers' ``ROPE_INIT_FUNCTIONS`` so the frequencies match the
target's own implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

DEFAULT_THETA = 10000.0


def rope_parameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """Normalised RoPE parameters of a HF config dict: ``{"rope_type", "rope_theta", ...}``.

    Accepts v5 ``rope_parameters`` (also per layer type, where ``full_attention`` is used) and
    legacy ``rope_scaling`` (``type`` or ``rope_type``) plus top-level ``rope_theta``.
    """
    raw = config.get("rope_parameters")
    if (isinstance(raw, Mapping) and raw and not {"rope_type", "type", "rope_theta"} & set(raw)
            and all(isinstance(v, Mapping) for v in raw.values())):
        raw = raw.get("full_attention") or next(iter(raw.values()))
    params = dict(raw) if isinstance(raw, Mapping) and raw else dict(config.get("rope_scaling") or {})
    legacy_type = params.pop("type", None)
    params["rope_type"] = params.get("rope_type") or legacy_type or "default"
    theta = params.get("rope_theta", config.get("rope_theta"))
    params["rope_theta"] = float(DEFAULT_THETA if theta is None else theta)
    if "partial_rotary_factor" not in params and config.get("partial_rotary_factor") is not None:
        params["partial_rotary_factor"] = config["partial_rotary_factor"]
    return params


def rope_config_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The RoPE fields of a config.json, mirrored both ways: ``rope_theta`` and legacy
    ``rope_scaling`` (None when unscaled) for older loaders, ``rope_parameters`` for transformers v5."""
    params = dict(params)
    scaling = None
    if params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        scaling["type"] = params["rope_type"]
    return {"rope_theta": params.get("rope_theta", DEFAULT_THETA), "rope_scaling": scaling,
            "rope_parameters": params}


def inverse_frequencies(params: Mapping[str, Any], head_dim: int, max_position_embeddings: int,
                        seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """(inv_freq [rot_dim/2] float64, attention scaling) for these parameters."""
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
        exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim
        return 1.0 / (float(params["rope_theta"]) ** exponents), 1.0
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if rope_type not in ROPE_INIT_FUNCTIONS:
        known = ", ".join(["default", *sorted(ROPE_INIT_FUNCTIONS)])
        raise ValueError(f"unsupported rope_type {rope_type!r}; supported: {known}")
    config = LlamaConfig(hidden_size=head_dim, num_attention_heads=1, head_dim=head_dim,
                         max_position_embeddings=max_position_embeddings, rope_parameters=dict(params))
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)
    return inv_freq.to(torch.float64), float(scaling)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for given positions. Frequencies are a plain float64 tensor, not a buffer:
    they never enter a state dict and a ``.to(bfloat16)`` of the model cannot round them."""

    def __init__(self, head_dim: int, params: Mapping[str, Any], max_position_embeddings: int) -> None:
        super().__init__()
        self.params = dict(params)
        self.head_dim = head_dim
        self.max_position_embeddings = max_position_embeddings
        self.inv_freq, self.attention_scaling = inverse_frequencies(self.params, head_dim,
                                                                    max_position_embeddings)

    def _frequencies(self, seq_len: int) -> tuple[torch.Tensor, float]:
        original = int(self.params.get("original_max_position_embeddings", self.max_position_embeddings))
        if self.params["rope_type"] == "dynamic" and seq_len > original:
            return inverse_frequencies(self.params, self.head_dim, self.max_position_embeddings, seq_len)
        return self.inv_freq, self.attention_scaling

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids [..., S] -> (cos, sin) [..., S, rot_dim] in ``dtype``."""
        inv_freq, scaling = self._frequencies(int(position_ids.max()) + 1 if position_ids.numel() else 0)
        work = torch.float64 if dtype == torch.float64 else torch.float32
        inv_freq = inv_freq.to(device=position_ids.device, dtype=work)
        freqs = position_ids.to(work)[..., None] * inv_freq  # [..., S, rot_dim/2]
        emb = torch.cat([freqs, freqs], dim=-1)  # [..., S, rot_dim]
        return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, S, D] by cos/sin [B, S, R] (R <= D: the first R dims rotate, the rest pass)."""
    cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, R]
    rot = cos.shape[-1]
    if rot == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return torch.cat([x_rot * cos + rotate_half(x_rot) * sin, x_pass], dim=-1)
