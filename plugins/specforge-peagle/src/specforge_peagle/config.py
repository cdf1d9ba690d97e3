"""The shape of a P-EAGLE draft: everything its export's config.json records, nothing learned. No torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PeagleConfig:
    """A P-EAGLE draft for one target. The draft width is the target's (the embedding is a copy of it)."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_layers: int
    vocab_size: int
    draft_vocab_size: int
    aux_layer_ids: tuple[int, ...]  # 0-based "output of layer i", as SpecForge captures them
    mask_token_id: int
    num_depths: int
    rope: Mapping[str, Any]
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    norm_before_residual: bool = False
    target_model: str = ""  # the verifier's path or hub id (speculators_config.verifier)
    target_config: Mapping[str, Any] = field(default_factory=dict)  # token ids, architectures

    @property
    def target_hidden_size(self) -> int:
        return self.hidden_size

    @property
    def feature_size(self) -> int:
        """Width of the concatenated target features (and of ``mask_hidden``): 3·H."""
        return len(self.aux_layer_ids) * self.hidden_size
