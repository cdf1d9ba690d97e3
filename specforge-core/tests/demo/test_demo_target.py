"""The built demo target (shared cache): accurate, loadable by plain transformers, as described."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specforge.demo import recipe
from specforge.demo.assets import demo_target_info, ensure_demo_assets


def test_recorded_accuracy_meets_the_threshold(demo_assets):
    report = json.loads((demo_assets.target_dir / "specforge_demo.json").read_text())
    assert demo_assets.accuracy == report["accuracy"] >= recipe.train_recipe().min_accuracy >= 0.5
    assert report["recipe"]["steps"] == recipe.train_recipe().steps
    assert report["heldout_size"] >= 200


def test_fifty_heldout_prompts_answered_exactly_by_plain_transformers_generate(demo_assets):
    tok = AutoTokenizer.from_pretrained(str(demo_assets.target_dir))
    model = AutoModelForCausalLM.from_pretrained(str(demo_assets.target_dir), dtype=torch.float64).eval()
    records = [json.loads(line) for line in demo_assets.heldout_path.read_text().splitlines()]
    picked = records[:: max(1, len(records) // 50)][:50]
    hits = 0
    for rec in picked:
        user, answer = rec["messages"][0]["content"], rec["messages"][1]["content"]
        text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, do_sample=False, max_new_tokens=48)
        hits += tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip() == answer
    assert len(picked) == 50
    assert hits / 50 >= recipe.train_recipe().min_accuracy  # the build's own bar, as measured by HF alone


def test_target_config_matches_the_torch_free_description(demo_assets):
    config = json.loads((demo_assets.target_dir / "config.json").read_text())
    info = demo_target_info(demo_assets.root.parent)
    assert info.model_path == str(demo_assets.target_dir)
    assert config["model_type"] == info.model_type == "qwen3"
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        info.num_layers, info.hidden_size, info.vocab_size)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (
        info.num_attention_heads, info.num_key_value_heads, info.head_dim)
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]  # for transformers 4.x readers
    tok = AutoTokenizer.from_pretrained(str(demo_assets.target_dir))
    assert len(tok) == config["vocab_size"]
    assert tok.mask_token_id == info.mask_token_id


def test_asking_again_reuses_the_build(demo_assets):
    again = ensure_demo_assets(demo_assets.root.parent, progress=False)
    assert again.built_now is False
    assert again.manifest == demo_assets.manifest
    assert again.manifest["version"] == recipe.DEMO_VERSION
    assert again.manifest["recipe"] == recipe.recipe_name()
    assert {p.name for p in demo_assets.target_dir.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}
