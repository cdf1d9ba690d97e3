"""The export is what vLLM's speculators loader serves P-EAGLE from (names, shapes, dtypes and
config fields kept as data in ``speculators_format``), round-trips, and is judged after writing."""

from __future__ import annotations

import json

import pytest
import torch
from peagle_tiny import build
from safetensors.torch import load_file, save_file
from specforge_peagle import speculators_format as fmt_spec
from specforge_peagle.export import export_draft, load_export
from specforge_peagle.export_check import check_export_dir

from specforge.api import StepContext, UserError

QWEN3_8B_PEAGLE = {  # the shape of the Qwen3-8B recipe's draft, as its speculators config.json says
    "speculators_model_type": "peagle", "draft_vocab_size": 32000, "target_hidden_size": 4096,
    "transformer_layer_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 12288,
                                 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                                 "num_hidden_layers": 4, "vocab_size": 151936},
}


def test_the_name_table_for_the_qwen3_8b_draft() -> None:
    """Written out by hand from speculators' PEagleDraftModel (Eagle3 first layer, Llama layers)."""
    table = fmt_spec.expected_weights(QWEN3_8B_PEAGLE)
    assert table["embed_tokens.weight"] == (151936, 4096)
    assert table["fc.weight"] == (4096, 3 * 4096)
    assert table["mask_hidden"] == (1, 1, 3 * 4096)
    assert table["layers.0.self_attn.q_proj.weight"] == (4096, 8192)  # [norm(embed) ; norm(hidden)]
    assert table["layers.0.self_attn.k_proj.weight"] == (1024, 8192)
    assert table["layers.0.hidden_norm.weight"] == (4096,)
    assert table["layers.3.self_attn.q_proj.weight"] == (4096, 4096)
    assert table["layers.3.self_attn.v_proj.weight"] == (1024, 4096)
    assert table["layers.3.mlp.down_proj.weight"] == (4096, 12288)
    assert "layers.1.hidden_norm.weight" not in table
    assert table["lm_head.weight"] == (32000, 4096) and table["d2t"] == (32000,) and table["t2d"] == (151936,)
    assert len(table) == 7 + 10 + 3 * 9


@pytest.fixture
def exported(tmp_path):
    strategy, draft, info, samples = build({"num_draft_layers": 3, "num_depths": 4, "draft_vocab_size": 24})
    draft = draft.float()
    out = tmp_path / "export"
    report = strategy.export(draft, out, "speculators")
    return strategy, draft, info, samples, out, report


def test_the_export_holds_exactly_the_speculators_names_and_every_trained_tensor(exported) -> None:
    _, draft, _, _, out, report = exported
    config = json.loads((out / "config.json").read_text())
    written = load_file(str(out / "model.safetensors"))
    assert {n: tuple(t.shape) for n, t in written.items()} == fmt_spec.expected_weights(config)
    assert written["d2t"].dtype == torch.int64 and written["t2d"].dtype == torch.bool
    trained = {n for n, p in draft.named_parameters() if p.requires_grad} | {n for n, _ in draft.named_buffers()}
    assert trained == set(written)  # nothing learned is left behind; the frozen teacher head is not exported
    for name, tensor in written.items():
        assert torch.equal(tensor, draft.state_dict()[name]), name
    assert report["architecture"] == "PEagleDraftModel"
    assert check_export_dir(out) == []


def test_the_config_is_a_peagle_speculators_config(exported) -> None:
    strategy, draft, info, _, out, _ = exported
    config = json.loads((out / "config.json").read_text())
    assert fmt_spec.config_problems(config) == []
    assert config["speculators_model_type"] == "peagle"
    assert config["speculators_config"]["algorithm"] == "peagle"
    assert config["speculators_config"]["proposal_methods"][0]["speculative_tokens"] == 4  # num_depths
    assert config["speculators_config"]["verifier"] == {"name_or_path": info.model_path,
                                                         "architectures": ["Qwen3ForCausalLM"]}
    assert config["mask_token_id"] == info.special_tokens.mask == draft.config.mask_token_id
    assert config["eagle_aux_hidden_state_layer_ids"] == [i + 1 for i in strategy.aux_layer_ids(info)] == [2, 4, 5]
    assert config["draft_vocab_size"] == 24 and config["embed_requires_grad"] is True
    layer = config["transformer_layer_config"]
    assert (layer["model_type"], layer["num_hidden_layers"], layer["hidden_size"], layer["vocab_size"]) == \
        ("llama", 3, info.hidden_size, info.vocab_size)


def test_load_export_reproduces_drafting_and_the_loss(exported) -> None:
    strategy, draft, info, samples, out, _ = exported
    loaded = load_export(out, info)
    accepted = samples[0]["input_ids"][:7].tolist()
    feats = {"hidden_states": samples[0]["hidden_states"][:6].float()}
    assert strategy.propose(loaded, None, accepted, feats, 4) == strategy.propose(draft, None, accepted, feats, 4)
    batch = strategy.collate([{k: (v.float() if v.is_floating_point() else v) for k, v in s.items()} for s in samples])
    ctx = StepContext(step=2, total_steps=3)
    torch.testing.assert_close(strategy.loss(loaded, batch, ctx).loss, strategy.loss(draft, batch, ctx).loss)


def test_a_full_draft_vocabulary_exports_no_maps_and_loads_as_the_identity(tmp_path) -> None:
    strategy, draft, info, _ = build({"num_draft_layers": 2, "num_depths": 3})  # 32000 -> the vocab, 40
    out = tmp_path / "full"
    strategy.export(draft.float(), out, "speculators")
    assert not {"d2t", "t2d"} & set(load_file(str(out / "model.safetensors")))
    loaded = load_export(out, info)
    assert torch.equal(loaded.to_target_ids(torch.arange(40)), torch.arange(40))


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t, c: t.update({"midlayer.hidden_norm.weight": t.pop("layers.0.hidden_norm.weight")}),
     "missing weight layers.0.hidden_norm.weight"),
    (lambda t, c: t.pop("mask_hidden"), "missing weight mask_hidden"),
    (lambda t, c: t.update({"d2t": t["d2t"].int()}), "d2t has dtype int32"),
    (lambda t, c: t.update({"fc.weight": t["fc.weight"][:, :-1].contiguous()}), "weight fc.weight has shape"),
    (lambda t, c: c.pop("mask_token_id"), "mask_token_id is None"),
    (lambda t, c: c["eagle_aux_hidden_state_layer_ids"].pop(), "eagle_aux_hidden_state_layer_ids"),
    (lambda t, c: c["transformer_layer_config"].update({"model_type": "qwen3"}), "model_type is 'qwen3'"),
])
def test_the_export_check_names_what_vllm_would_misread(exported, edit, problem) -> None:
    *_, out, _ = exported
    tensors = load_file(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    edit(tensors, config)
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config))
    problems = check_export_dir(out)
    assert any(problem in p for p in problems), problems


def test_other_formats_and_other_exports_are_refused(exported, tmp_path) -> None:
    _, draft, info, _, out, _ = exported
    with pytest.raises(UserError, match="use --format speculators"):
        export_draft(draft, tmp_path / "x", "sglang")
    config = json.loads((out / "config.json").read_text())
    config["speculators_model_type"] = "eagle3"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="not a P-EAGLE speculators export"):
        load_export(out, info)
