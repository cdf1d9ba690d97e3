"""Export to SGLang's LlamaForCausalLMEagle3 layout, and load it back."""

from __future__ import annotations

import json

import pytest
import torch
from eagle3_tiny import build
from safetensors import safe_open

from specforge_eagle3.attention import TTTCache

EXPECTED_KEYS = {
    "midlayer.input_layernorm.weight", "midlayer.hidden_norm.weight",
    "midlayer.self_attn.q_proj.weight", "midlayer.self_attn.k_proj.weight",
    "midlayer.self_attn.v_proj.weight", "midlayer.self_attn.o_proj.weight",
    "midlayer.post_attention_layernorm.weight",
    "midlayer.mlp.gate_proj.weight", "midlayer.mlp.up_proj.weight", "midlayer.mlp.down_proj.weight",
    "fc.weight", "norm.weight", "lm_head.weight", "d2t", "t2d",
}
LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}


def small():
    # H=32, 4 heads of 8 (2 kv heads), I=48, V=40, Vd=24, aux ids from an 8-layer target
    return build({"draft_vocab_size": 24}, hidden=32, heads=4, kv_heads=2, vocab=40, intermediate=48,
                 rope=LLAMA3_ROPE)


def test_export_writes_exactly_the_serving_keys_with_their_shapes(tmp_path) -> None:
    strategy, draft, _ = small()
    info = strategy.export(draft, tmp_path, "sglang")
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        dtypes = {k: f.get_tensor(k).dtype for k in ("d2t", "t2d")}
    assert set(shapes) == EXPECTED_KEYS
    assert shapes["midlayer.self_attn.q_proj.weight"] == (32, 64)
    assert shapes["midlayer.self_attn.k_proj.weight"] == (16, 64)
    assert shapes["midlayer.self_attn.o_proj.weight"] == (32, 32)
    assert shapes["midlayer.mlp.gate_proj.weight"] == (48, 32)
    assert shapes["midlayer.mlp.down_proj.weight"] == (32, 48)
    assert shapes["fc.weight"] == (32, 96)
    assert shapes["lm_head.weight"] == (24, 32)
    assert shapes["d2t"] == (24,) and shapes["t2d"] == (40,)
    assert dtypes == {"d2t": torch.int64, "t2d": torch.bool}
    assert info["architecture"] == "LlamaForCausalLMEagle3"
    assert {k: tuple(v) for k, v in info["weights"].items()} == shapes


def test_export_config_is_what_sglang_reads(tmp_path) -> None:
    strategy, draft, _ = small()
    info = strategy.export(draft, tmp_path, "sglang")
    config = json.loads((tmp_path / "config.json").read_text())
    assert info["config"] == config
    assert config["architectures"] == ["LlamaForCausalLMEagle3"]
    assert config["num_hidden_layers"] == 1
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]) == (32, 4, 2)
    assert (config["head_dim"], config["intermediate_size"]) == (8, 48)
    assert (config["vocab_size"], config["draft_vocab_size"], config["target_hidden_size"]) == (40, 24, 32)
    assert config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [1, 3, 4]
    assert config["tie_word_embeddings"] is False
    # rope mirrored: legacy rope_theta/rope_scaling and transformers v5 rope_parameters
    assert config["rope_theta"] == 500000.0
    assert config["rope_scaling"]["rope_type"] == config["rope_scaling"]["type"] == "llama3"
    assert config["rope_scaling"]["factor"] == 8.0
    assert config["rope_parameters"]["rope_type"] == "llama3"
    assert config["rope_parameters"]["rope_theta"] == 500000.0


def test_unscaled_rope_exports_no_rope_scaling(tmp_path) -> None:
    strategy, draft, _ = build({"draft_vocab_size": 24}, rope={"rope_parameters": {"rope_type": "default",
                                                                                   "rope_theta": 1e6}})
    config = strategy.export(draft, tmp_path, "hf")["config"]
    assert config["rope_scaling"] is None and config["rope_theta"] == 1e6
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 1e6}


def test_export_refuses_a_draft_whose_weights_do_not_match_its_config(tmp_path) -> None:
    strategy, draft, _ = small()
    draft.lm_head = torch.nn.Linear(32, 23, bias=False)
    with pytest.raises(ValueError, match=r"lm_head\.weight has shape \[23, 32\], expected \[24, 32\]"):
        strategy.export(draft, tmp_path, "sglang")
    assert not (tmp_path / "model.safetensors").exists()


def test_export_rejects_an_unknown_format(tmp_path) -> None:
    strategy, draft, _ = small()
    with pytest.raises(ValueError, match="sglang, hf"):
        strategy.export(draft, tmp_path, "gguf")


def logits_of(draft, ids, feats):
    cache = TTTCache()
    mask = torch.ones(5, 5, dtype=torch.bool).tril()[None, None]
    out, logits = draft.step(ids, draft.fuse(feats), torch.arange(5)[None], cache, mask)
    _, logits2 = draft.step(ids, out, torch.arange(1, 6)[None], cache, mask)
    return torch.cat([logits, logits2])


def test_export_then_load_export_gives_identical_logits(tmp_path) -> None:
    strategy, draft, info = small()
    with torch.no_grad():  # move every trainable weight away from its init
        for p in draft.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    strategy.export(draft, tmp_path, "sglang")
    loaded = strategy.load_export(tmp_path, info)
    assert loaded.fc.weight.dtype == torch.float64
    assert torch.equal(loaded.d2t, draft.d2t) and torch.equal(loaded.t2d, draft.t2d)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40, (1, 5), generator=gen)
    feats = torch.randn(1, 5, 96, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(logits_of(loaded, ids, feats), logits_of(draft, ids, feats))


def test_load_export_names_what_is_missing(tmp_path) -> None:
    strategy, draft, info = small()
    strategy.export(draft, tmp_path, "sglang")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["norm.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing weight norm\.weight"):
        strategy.load_export(tmp_path, info)
