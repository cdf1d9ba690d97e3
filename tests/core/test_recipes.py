"""Every recipe in docs/recipes is accepted by `specforge run --plan` for the model it is written for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge

RECIPES = sorted((Path(__file__).resolve().parents[2] / "docs" / "recipes").glob("*.toml"))

QWEN3_8B = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 36,
            "hidden_size": 4096, "vocab_size": 151936, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "intermediate_size": 12288, "rope_theta": 1000000, "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6}


def test_there_are_recipes():
    assert RECIPES, "docs/recipes holds no recipe"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_plans_for_a_qwen3_8b_shaped_target(recipe, tmp_path):
    target = tmp_path / "Qwen3-8B"
    target.mkdir()
    (target / "config.json").write_text(json.dumps(QWEN3_8B))  # shape only: --plan reads no weights
    proc = run_specforge("run", "-c", str(recipe), "--target-model", str(target), "--plan")
    assert "36 layers, hidden 4096" in proc.stdout
    assert "features" in proc.stdout
