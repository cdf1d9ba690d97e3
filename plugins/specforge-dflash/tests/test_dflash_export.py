"""The serving export: exactly the DFlash weights, the config SGLang reads, and a lossless reload."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy

LAYER_WEIGHTS = ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                 "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                 "self_attn.q_norm.weight", "self_attn.k_norm.weight", "mlp.gate_proj.weight",
                 "mlp.up_proj.weight", "mlp.down_proj.weight")


def _draft(dtype="float64"):
    info = tiny_target_info(hidden_size=32, vocab_size=48, num_layers=8, dtype=dtype)
    strategy = DFlashStrategy(DFlashOptions(block_size=4, num_draft_layers=2))
    torch.manual_seed(0)
    draft = strategy.build_draft(info, None)
    with torch.no_grad():
        for p in draft.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # away from the initial ones and zeros
    return info, strategy, draft


def _logits(draft, info):
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, info.vocab_size - 1, (1, 12), generator=gen)
    feats = torch.randn(1, 12, draft.config.context_width, generator=gen, dtype=torch.float64)
    anchors, keep = torch.tensor([[2, 7]]), torch.tensor([[True, True]])
    blocks = noise_blocks(ids, anchors, keep, 4, draft.config.mask_token_id)
    with torch.no_grad():
        return draft(feats, blocks, anchors, keep)["logits"]


@pytest.mark.parametrize("fmt", ["sglang"])
def test_export_holds_exactly_the_draft_weights_and_no_target_weights(tmp_path, fmt):
    _info, strategy, draft = _draft()
    result = strategy.export(draft, tmp_path, fmt)
    expected = {"fc.weight", "hidden_norm.weight", "norm.weight",
                *(f"layers.{i}.{w}" for i in range(2) for w in LAYER_WEIGHTS)}
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert set(weights) == expected
    assert tuple(weights["fc.weight"].shape) == (32, 2 * 32)  # [H, K·H]
    assert result["weights"] == {k: list(v.shape) for k, v in weights.items()}
    assert result["architecture"] == "DFlashDraftModel"


def test_export_config_names_the_architecture_and_the_dflash_fields(tmp_path):
    _info, strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["DFlashDraftModel"] and config["model_type"] == "qwen3"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["head_dim"]) == (32, 2, 4, 2, 8)
    assert config["block_size"] == 4 and config["num_target_layers"] == 8
    assert config["dflash_config"]["target_layer_ids"] == [1, 5]  # round(1 + i·(8-4)/1)
    assert config["dflash_config"]["mask_token_id"] == 47 and config["dflash_config"]["block_size"] == 4
    assert config["layer_types"] == ["full_attention", "full_attention"]


def test_a_reloaded_export_gives_identical_logits(tmp_path):
    info, strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    loaded = strategy.load_export(tmp_path, info)
    assert torch.equal(_logits(loaded, info), _logits(draft, info))


def test_an_invalid_draft_is_refused_with_every_problem_listed(tmp_path):
    _info, strategy, draft = _draft()
    draft.extra = torch.nn.Linear(2, 2, bias=False)
    draft.norm.weight = torch.nn.Parameter(torch.ones(33, dtype=torch.float64))
    with pytest.raises(ValueError) as err:
        strategy.export(draft, tmp_path, "sglang")
    assert "unexpected weight extra.weight" in str(err.value)
    assert "norm.weight has shape [33], expected [32]" in str(err.value)
    assert not (tmp_path / "model.safetensors").exists()


def test_unknown_export_formats_are_refused(tmp_path):
    _info, strategy, draft = _draft()
    with pytest.raises(ValueError, match="'onnx'"):
        strategy.export(draft, tmp_path, "onnx")


def test_an_export_for_another_target_is_refused(tmp_path):
    _info, strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    other = dataclasses.replace(tiny_target_info(hidden_size=32, vocab_size=48, num_layers=12))
    with pytest.raises(ValueError, match="12"):
        strategy.load_export(tmp_path, other)


def test_checkpoint_extra_state_refuses_a_draft_built_with_other_options():
    info, strategy, draft = _draft()
    state = strategy.extra_state(draft)
    strategy.load_extra_state(draft, state)  # the same draft: accepted
    other = DFlashStrategy(DFlashOptions(block_size=8, num_draft_layers=2)).build_draft(info, None)
    with pytest.raises(ValueError, match="block_size"):
        strategy.load_extra_state(other, state)
