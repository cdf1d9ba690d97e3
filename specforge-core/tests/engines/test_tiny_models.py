"""The tiny-target helpers produce real, reloadable Hugging Face directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from specforge.testing.tiny_models import make_tiny_target, make_tiny_tokenizer


def test_tokenizer_is_bytes_then_chatml_specials() -> None:
    tok = make_tiny_tokenizer(mask_token="<|mask|>")
    assert len(tok) == 260
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]) == [
        256, 257, 258, 259]
    assert (tok.eos_token_id, tok.pad_token_id, tok.mask_token_id) == (258, 256, 259)
    text = "héllo, 2+2=4 <|im_end|>"
    assert tok.decode(tok(text).input_ids) == text


def test_saved_tokenizer_renders_chatml(qwen3_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(qwen3_dir), local_files_only=True)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False).input_ids
    specials_chars = 2 * len("<|im_start|>") + len("<|im_end|>")
    assert ids[0] == 257 and ids.count(258) == 1
    assert len(ids) == len(text.encode()) - specials_chars + 3  # one id per byte, one per special


def test_config_matches_the_requested_shape(llama_dir: Path, qwen2_tied_dir: Path) -> None:
    llama = json.loads((llama_dir / "config.json").read_text())
    assert llama["architectures"] == ["LlamaForCausalLM"] and llama["num_hidden_layers"] == 3
    assert llama["vocab_size"] == 272 and llama["tie_word_embeddings"] is False  # 259 tokens -> next 16
    assert llama["eos_token_id"] == 258
    qwen2 = json.loads((qwen2_tied_dir / "config.json").read_text())
    assert qwen2["architectures"] == ["Qwen2ForCausalLM"] and qwen2["tie_word_embeddings"] is True


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = make_tiny_target(tmp_path / "a", "qwen3", num_layers=2, seed=5)
    b = make_tiny_target(tmp_path / "b", "qwen3", num_layers=2, seed=5)
    c = make_tiny_target(tmp_path / "c", "qwen3", num_layers=2, seed=6)
    data = [(d / "model.safetensors").read_bytes() for d in (a, b, c)]
    assert data[0] == data[1] and data[0] != data[2]


def test_vocab_smaller_than_the_tokenizer_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smaller than the tokenizer's 259 tokens"):
        make_tiny_target(tmp_path, vocab=100)
