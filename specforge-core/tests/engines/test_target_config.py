"""Reading a target directory without torch: TargetInfo shape fields, and errors that name the fix."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.engines.hf import HFEngine
from specforge.engines.target_config import TargetModelError, target_info_from_config
from specforge.errors import SpecforgeError


def test_shape_fields_come_from_config_json(qwen3_dir: Path) -> None:
    info = target_info_from_config(qwen3_dir)
    assert (info.model_type, info.num_layers, info.hidden_size, info.vocab_size) == ("qwen3", 4, 64, 272)
    assert (info.num_attention_heads, info.num_key_value_heads, info.head_dim) == (4, 2, 16)
    assert (info.intermediate_size, info.max_position_embeddings) == (128, 512)
    assert info.rms_norm_eps == pytest.approx(1e-6)
    assert info.config["architectures"] == ["Qwen3ForCausalLM"]
    assert info.embed_weight is None and info.tokenizer is None


def test_head_dim_defaults_to_hidden_over_heads(qwen2_tied_dir: Path) -> None:
    assert "head_dim" not in json.loads((qwen2_tied_dir / "config.json").read_text())
    assert target_info_from_config(qwen2_tied_dir).head_dim == 16


def test_mask_token_id_is_read_from_the_tokenizer_files(qwen3_dir: Path, llama_dir: Path) -> None:
    assert target_info_from_config(qwen3_dir).mask_token_id == 259  # <|mask|> follows the 3 ChatML specials
    assert target_info_from_config(llama_dir).mask_token_id is None


def test_reading_a_target_imports_no_torch(qwen3_dir: Path) -> None:
    code = ("import sys; from specforge.engines.target_config import target_info_from_config as t; "
            f"t({str(qwen3_dir)!r}); import specforge.builtin.engines; "
            "print(sorted(m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("load", [target_info_from_config, lambda p: HFEngine(model_path=str(p), device="cpu")])
def test_missing_directory_is_named_with_the_fix(tmp_path: Path, load: object) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SpecforgeError, match=r"nowhere' does not exist.*never downloads"):
        load(missing)


@pytest.mark.parametrize("load", [target_info_from_config, lambda p: HFEngine(model_path=str(p), device="cpu")])
def test_directory_without_config_json_is_named_with_the_fix(tmp_path: Path, load: object) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(TargetModelError, match=rf"{tmp_path.name}' has no config\.json; point the target"):
        load(tmp_path)


@pytest.mark.parametrize("load", [target_info_from_config, lambda p: HFEngine(model_path=str(p), device="cpu")])
def test_unsupported_architecture_lists_the_supported_ones(qwen3_dir: Path, tmp_path: Path,
                                                           load: object) -> None:
    target = tmp_path / "gpt2"
    shutil.copytree(qwen3_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetModelError, match=r"unsupported architecture GPT2LMHeadModel.*Qwen3ForCausalLM"):
        load(target)


def test_file_instead_of_directory_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    with pytest.raises(TargetModelError, match="is a file; pass the directory"):
        target_info_from_config(path)


def test_config_without_layer_count_names_the_key(qwen3_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "broken"
    target.mkdir()
    config = json.loads((qwen3_dir / "config.json").read_text())
    del config["num_hidden_layers"]
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetModelError, match="no 'num_hidden_layers'"):
        target_info_from_config(target)
