"""The demo tokenizer: small, ChatML specials and a mask token, a chat template, deterministic."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from specforge.demo import recipe
from specforge.demo.assets import MASK_TOKEN_ID, build_data_and_tokenizer
from specforge.demo.tasks import read_jsonl


@pytest.fixture(scope="module")
def tok(data_and_tokenizer):
    root, _ = data_and_tokenizer
    return AutoTokenizer.from_pretrained(str(root / "tokenizer"))


def test_building_data_and_tokenizer_twice_gives_identical_bytes(data_and_tokenizer, tmp_path):
    _, first = data_and_tokenizer
    second = build_data_and_tokenizer(tmp_path)
    assert set(first) == {"train.jsonl", "heldout.jsonl", "tokenizer.json"}
    assert second == first


def test_vocabulary_is_small_and_matches_the_target_shape(tok):
    assert len(tok) == recipe.TARGET_SHAPE.vocab_size <= 2048


def test_specials_and_mask_are_single_ids_with_the_recipe_ids(tok):
    for i, token in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]):
        assert tok(token, add_special_tokens=False)["input_ids"] == [i]
    assert tok.mask_token == "<|mask|>"
    assert tok.mask_token_id == MASK_TOKEN_ID == 3
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")


def test_chat_template_renders_chatml_without_a_system_prompt(tok):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n")
    assert tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_tokenizer_config_names_a_class_and_template_older_transformers_load(data_and_tokenizer):
    import json

    root, _ = data_and_tokenizer
    config = json.loads((root / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "<|im_start|>" in config["chat_template"]


def test_every_answer_is_10_to_40_tokens_and_round_trips(tok, data_and_tokenizer):
    root, _ = data_and_tokenizer
    conversations = read_jsonl(root / "data" / "train.jsonl") + read_jsonl(root / "data" / "heldout.jsonl")
    for conv in conversations:
        ids = tok(conv.assistant, add_special_tokens=False)["input_ids"]
        assert 10 <= len(ids) <= 40, conv
    for conv in conversations[:200]:
        assert tok.decode(tok(conv.user, add_special_tokens=False)["input_ids"]) == conv.user
