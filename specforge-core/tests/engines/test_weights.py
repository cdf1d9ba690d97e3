"""Frozen embedding and lm_head read from safetensors equal the loaded model's own parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from specforge.engines.target_config import TargetModelError
from specforge.engines.weights import frozen_weight_names, read_frozen_weights


def _model_weights(model_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    return model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()


def _shard(src: Path, dst: Path) -> Path:
    """Copy a single-file checkpoint into two safetensors shards plus an index, as large models ship."""
    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    # alternate tensors between shards; the embedding and lm_head land in different ones
    names = ["model.embed_tokens.weight", "lm_head.weight",
             *sorted(set(state) - {"model.embed_tokens.weight", "lm_head.weight"})]
    halves = {"model-00001-of-00002.safetensors": names[0::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for file_name, keys in halves.items():
        save_file({k: state[k] for k in keys}, str(dst / file_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, file_name))
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


def test_single_file_checkpoint_weights_equal_the_model(qwen3_dir: Path) -> None:
    embed, head = read_frozen_weights(qwen3_dir)
    model_embed, model_head = _model_weights(qwen3_dir)
    assert torch.equal(embed, model_embed) and torch.equal(head, model_head)
    assert not torch.equal(embed, head)  # untied: two different matrices


def test_sharded_checkpoint_weights_equal_the_model(llama_dir: Path, tmp_path: Path) -> None:
    sharded = _shard(llama_dir, tmp_path / "sharded")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    # the split must actually put the two matrices in different shards for this test to mean something
    assert index["model.embed_tokens.weight"] != index["lm_head.weight"]
    embed, head = read_frozen_weights(sharded)
    model_embed, model_head = _model_weights(llama_dir)
    assert torch.equal(embed, model_embed) and torch.equal(head, model_head)


def test_tied_checkpoint_uses_the_embedding_as_lm_head(qwen2_tied_dir: Path) -> None:
    assert frozen_weight_names(qwen2_tied_dir) == ("model.embed_tokens.weight",) * 2
    embed, head = read_frozen_weights(qwen2_tied_dir)
    model_embed, model_head = _model_weights(qwen2_tied_dir)
    assert head is embed
    assert torch.equal(embed, model_embed) and torch.equal(head, model_head)


def test_missing_lm_head_tensor_means_tied_even_without_the_flag(qwen3_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "no-head"
    shutil.copytree(qwen3_dir, target)
    state = load_file(str(target / "model.safetensors"))
    del state["lm_head.weight"]
    save_file(state, str(target / "model.safetensors"))
    embed, head = read_frozen_weights(target)
    assert head is embed
    assert torch.equal(embed, state["model.embed_tokens.weight"])


def test_directory_without_safetensors_names_the_expected_files(qwen3_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "bin-only"
    target.mkdir()
    shutil.copy(qwen3_dir / "config.json", target / "config.json")
    with pytest.raises(TargetModelError, match=r"model\.safetensors.*safetensors checkpoints only"):
        read_frozen_weights(target)


def test_missing_shard_file_is_named(llama_dir: Path, tmp_path: Path) -> None:
    sharded = _shard(llama_dir, tmp_path / "sharded")
    (sharded / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(TargetModelError, match=r"model-00001-of-00002\.safetensors"):
        read_frozen_weights(sharded)
