"""The shared rotary embedding (specforge.nn.rope) the draft builds from its target's config."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from specforge.nn.rope import RotaryEmbedding, apply_rotary, rope_config_fields, rope_parameters

CASES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32, "rope_theta": 500000.0},
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "rope_theta": 10000.0},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cos_sin_and_rotation_match_transformers_llama(name: str) -> None:
    params = CASES[name]
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=16, max_position_embeddings=128,
                         rope_parameters=dict(params))
    positions = torch.arange(0, 100, 7)[None]
    x = torch.randn(1, 4, positions.shape[1], 16)
    ref_cos, ref_sin = LlamaRotaryEmbedding(config)(x, positions)
    cos, sin = RotaryEmbedding(16, params, 128)(positions, torch.float32)
    torch.testing.assert_close(cos, ref_cos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sin, ref_sin, rtol=1e-5, atol=1e-5)
    ref_q, _ = apply_rotary_pos_emb(x, x, ref_cos, ref_sin)
    torch.testing.assert_close(apply_rotary(x, cos, sin), ref_q, rtol=1e-5, atol=1e-5)


def test_legacy_rope_scaling_and_v5_rope_parameters_normalise_alike() -> None:
    legacy = {"rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2.0}}
    v5 = {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5}}
    assert rope_parameters(legacy) == rope_parameters(v5) == {"rope_type": "linear", "factor": 2.0,
                                                              "rope_theta": 5e5}
    assert rope_parameters({}) == {"rope_type": "default", "rope_theta": 10000.0}


def test_config_fields_mirror_scaled_rope_into_legacy_keys() -> None:
    fields = rope_config_fields({"rope_type": "linear", "factor": 2.0, "rope_theta": 5e5})
    assert fields["rope_theta"] == 5e5
    assert fields["rope_scaling"] == {"rope_type": "linear", "type": "linear", "factor": 2.0}
    assert rope_parameters(fields) == rope_parameters({"rope_parameters": fields["rope_parameters"]})


def test_an_unknown_rope_type_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="llama3"):
        RotaryEmbedding(16, {"rope_type": "spiral", "rope_theta": 1.0}, 128)
