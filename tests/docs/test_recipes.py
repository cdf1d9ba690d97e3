"""Every recipe in docs/recipes is accepted by `specforge run --plan` for the model it is written for."""

from __future__ import annotations

from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge
from specforge.testing.tiny_models import write_plan_only_target

RECIPES = sorted((Path(__file__).resolve().parents[2] / "docs" / "recipes").glob("*.toml"))

QWEN3_8B = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 36,
            "hidden_size": 4096, "vocab_size": 151936, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "intermediate_size": 12288, "rope_theta": 1000000, "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6}
QWEN3_4B = {**QWEN3_8B, "hidden_size": 2560, "intermediate_size": 9728, "tie_word_embeddings": True}
# recipe file name prefix -> (the target's config, what `run --plan` says of it)
TARGETS = {"qwen3-8b": (QWEN3_8B, "36 layers, hidden 4096"), "qwen3-4b": (QWEN3_4B, "36 layers, hidden 2560")}


QWEN3_SPECIALS = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>",
                  151668: "</think>"}  # the last of Qwen3's 151669 tokenizer entries


def plan_only_target(target: Path, config: dict = QWEN3_8B) -> Path:
    return write_plan_only_target(target, config, QWEN3_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")


def test_there_are_recipes():
    assert RECIPES, "docs/recipes holds no recipe"


def recipe_target(recipe: Path) -> tuple[dict, str]:
    prefix = next((p for p in TARGETS if recipe.name.startswith(p + "-")), None)
    assert prefix, f"{recipe.name}: name recipes after their target ({', '.join(TARGETS)}) so the test can plan them"
    return TARGETS[prefix]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_plans_for_the_target_it_is_written_for(recipe, tmp_path):
    config, shape = recipe_target(recipe)
    target = plan_only_target(tmp_path / "target", config)
    proc = run_specforge("run", "-c", str(recipe), "--target-model", str(target), "--plan")
    assert shape in proc.stdout
    assert "features" in proc.stdout
    if any(m in recipe.name for m in ("dflash", "domino", "peagle", "dspark")):  # the facts' mask token for Qwen3
        assert "mask token 151669 (" in proc.stdout


def test_without_the_option_the_resolver_finds_qwen3s_first_unused_row(tmp_path):
    target = plan_only_target(tmp_path / "Qwen3-8B")
    data = tmp_path / "chats.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    proc = run_specforge("run", "--strategy", "dflash", "--target-model", str(target), "--data", str(data), "--plan")
    assert "mask token 151669 (first unused embedding row)" in proc.stdout
