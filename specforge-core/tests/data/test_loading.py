"""load_samples / load_prompts: truncation, dropped-sample reports, filters, determinism, stats."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from specforge.contracts import DataStats, Sample
from specforge.data import DataError, load_prompts, load_samples

CHATML_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


def chat(question: str, reply: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
            **extra}


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def decode_trained(tok, sample: Sample) -> str:
    return tok.decode([t for t, m in zip(sample.input_ids, sample.loss_mask) if m])


def test_truncation_cuts_to_max_length_and_keeps_the_trained_prefix(chatml, write_jsonl):
    prompt_len = len(encode(chatml, CHATML_PROMPT))
    path = write_jsonl([chat("What is 2+2?", "The answer is 4.")])
    loaded = load_samples(path, chatml, max_length=prompt_len + 2)
    (sample,) = loaded.samples
    assert len(sample.input_ids) == prompt_len + 2 == len(sample.loss_mask)
    assert chatml.decode(list(sample.input_ids[:prompt_len])) == CHATML_PROMPT
    assert sample.loss_mask == (0,) * prompt_len + (1, 1)
    assert decode_trained(chatml, sample) == "The answer"
    assert loaded.report.truncated_ids == ("chats-1",)


def test_sample_with_empty_mask_after_truncation_is_dropped_and_reported(chatml, write_jsonl, caplog):
    prompt_len = len(encode(chatml, CHATML_PROMPT))
    path = write_jsonl([chat("What is 2+2?", "The answer is 4."), chat("Hi", "Hello!")])
    with caplog.at_level(logging.WARNING, logger="specforge.data"):
        loaded = load_samples(path, chatml, max_length=prompt_len)  # line 1: prompt only
    assert [s.sample_id for s in loaded.samples] == ["chats-2"]
    assert loaded.report.empty_mask_ids == ("chats-1",)
    assert loaded.stats.num_samples == 1
    assert "empty loss mask" in caplog.text and "chats-1" in caplog.text


def test_conversation_without_a_reply_is_reported_not_trained(chatml, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "user", "content": "Anyone?"}]}, chat("Hi", "Hello!")])
    loaded = load_samples(path, chatml, max_length=128)
    assert [s.sample_id for s in loaded.samples] == ["chats-2"]
    assert loaded.report.empty_mask_ids == ("chats-1",)


def test_no_usable_sample_at_all_is_an_error_naming_why(chatml, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "user", "content": "Anyone?"}]}])
    with pytest.raises(DataError, match=r"no usable training samples.*empty loss mask.*chats-1"):
        load_samples(path, chatml, max_length=128)


def test_min_loss_tokens_drops_short_replies(chatml, write_jsonl):
    trained = len(encode(chatml, "Hello!<|im_end|>\n"))
    path = write_jsonl([chat("Hi", "Hello!"), chat("What is 2+2?", "The answer is 4.")])
    kept = load_samples(path, chatml, max_length=128, min_loss_tokens=trained)
    assert sorted(s.sample_id for s in kept.samples) == ["chats-1", "chats-2"]
    dropped = load_samples(path, chatml, max_length=128, min_loss_tokens=trained + 1)
    assert [s.sample_id for s in dropped.samples] == ["chats-2"]
    assert dropped.report.insufficient_mask_ids == ("chats-1",)


def test_require_consecutive_drops_a_sample_with_one_trained_token(chatml, write_jsonl):
    prompt_len = len(encode(chatml, CHATML_PROMPT))
    path = write_jsonl([chat("What is 2+2?", "The answer is 4."), chat("Hi", "Hello!")])
    loose = load_samples(path, chatml, max_length=prompt_len + 1)
    assert sorted(s.sample_id for s in loose.samples) == ["chats-1", "chats-2"]
    strict = load_samples(path, chatml, max_length=prompt_len + 1, require_consecutive=True)
    assert [s.sample_id for s in strict.samples] == ["chats-2"]
    assert strict.report.insufficient_mask_ids == ("chats-1",)


def _many(write_jsonl, n: int = 12, change: int | None = None):
    rows = [chat(f"Count to {i}", f"{'1 ' * i}done" + ("!" if i == change else ""), id=f"row{i}")
            for i in range(n)]
    return write_jsonl(rows)


def test_same_seed_same_ids_and_order_other_seed_other_order(chatml, write_jsonl):
    path = _many(write_jsonl)
    first = load_samples(path, chatml, max_length=128, seed=3)
    again = load_samples(path, chatml, max_length=128, seed=3)
    other = load_samples(path, chatml, max_length=128, seed=4)
    assert first.samples == again.samples
    ids = [s.sample_id for s in first.samples]
    assert sorted(ids) == sorted(f"row{i}" for i in range(12))
    assert [s.sample_id for s in other.samples] != ids
    assert sorted(other.samples, key=lambda s: s.sample_id) == sorted(first.samples, key=lambda s: s.sample_id)


def test_corpus_hash_ignores_order_and_follows_content(chatml, write_jsonl, tmp_path):
    base = load_samples(_many(write_jsonl), chatml, max_length=128, seed=0).stats
    reseeded = load_samples(_many(write_jsonl), chatml, max_length=128, seed=9).stats
    changed = load_samples(_many(write_jsonl, change=5), chatml, max_length=128, seed=0).stats
    assert len(base.corpus_hash) == 64
    assert base.corpus_hash == reseeded.corpus_hash
    assert base.corpus_hash != changed.corpus_hash


def test_stats_count_tokens_and_trained_token_ids(chatml, write_jsonl):
    path = write_jsonl([chat("What is 2+2?", "The answer is 4."), chat("Hi", "Hello!")])
    stats = load_samples(path, chatml, max_length=128).stats
    reply1 = encode(chatml, "The answer is 4.<|im_end|>\n")
    reply2 = encode(chatml, "Hello!<|im_end|>\n")
    full1 = encode(chatml, CHATML_PROMPT + "The answer is 4.<|im_end|>\n")
    full2 = encode(chatml, CHATML_PROMPT.replace("What is 2+2?", "Hi") + "Hello!<|im_end|>\n")
    assert isinstance(stats, DataStats)
    assert stats.num_samples == 2
    assert stats.num_tokens == len(full1) + len(full2)
    assert stats.num_loss_tokens == len(reply1) + len(reply2)
    assert stats.loss_token_counts == Counter(reply1) + Counter(reply2)


def test_max_samples_keeps_the_first_usable_lines_in_file_order(chatml, write_jsonl):
    rows = [{"messages": [{"role": "user", "content": "Anyone?"}]}] + [chat(f"q{i}", f"a{i}") for i in range(6)]
    loaded = load_samples(write_jsonl(rows), chatml, max_length=128, max_samples=3, seed=1)
    assert sorted(s.sample_id for s in loaded.samples) == ["chats-2", "chats-3", "chats-4"]


def test_tokenizer_without_chat_template_asks_for_a_template_file(plain_tokenizer, write_jsonl):
    with pytest.raises(DataError, match=r"has no chat template.*--chat-template"):
        load_samples(write_jsonl([chat("Hi", "Hello")]), plain_tokenizer, max_length=16)


def test_template_failure_on_a_line_names_the_line_or_is_skipped(chatml, write_jsonl, tmp_path):
    template = tmp_path / "no_tools.jinja"
    template.write_text(
        "{%- for m in messages -%}{%- if m.role == 'tool' -%}{{ raise_exception('no tool turns') }}"
        "{%- endif -%}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}")
    tool_line = {"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"},
                              {"role": "assistant", "content": "a"}]}
    path = write_jsonl([chat("Hi", "Hello!"), tool_line])
    with pytest.raises(DataError, match=rf"{path}:2: chat template failed: .*no tool turns"):
        load_samples(path, chatml, max_length=64, chat_template=template)
    loaded = load_samples(path, chatml, max_length=64, chat_template=template, skip_bad_lines=True)
    assert [s.sample_id for s in loaded.samples] == ["chats-1"]
    assert [b.line for b in loaded.report.skipped_lines] == [2]


def test_template_file_with_a_syntax_error_is_rejected_up_front(chatml, write_jsonl, tmp_path):
    template = tmp_path / "broken.jinja"
    template.write_text("{% for m in messages %}{{ m.content }}")
    with pytest.raises(DataError, match="does not parse"):
        load_samples(write_jsonl([chat("Hi", "Hello")]), chatml, max_length=16, chat_template=template)


def test_prompts_end_before_the_last_reply_with_the_generation_prompt(chatml, write_jsonl):
    two_turns = {"id": "t", "messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello!"},
                                          {"role": "user", "content": "What is 2+2?"},
                                          {"role": "assistant", "content": "4."}]}
    user_only = {"id": "u", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    loaded = load_prompts(write_jsonl([two_turns, user_only]), chatml)
    first, second = loaded.prompts
    assert (first.sample_id, second.sample_id) == ("t", "u")
    assert chatml.decode(list(first.input_ids)) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert first.reference == "4."
    assert chatml.decode(list(second.input_ids)) == CHATML_PROMPT
    assert second.reference == ""


def test_prompts_pass_template_arguments_and_drop_overlong_prompts(qwen3, write_jsonl):
    path = write_jsonl([chat("What is 2+2?", "4."), chat("Say something long " * 20, "ok")])
    loaded = load_prompts(path, qwen3, max_length=24, template_kwargs={"enable_thinking": False})
    (prompt,) = loaded.prompts
    assert qwen3.decode(list(prompt.input_ids)) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert loaded.report.too_long_ids == ("chats-2",)


def test_prompts_carry_the_lines_category_and_a_bad_category_is_a_bad_line(chatml, write_jsonl):
    path = write_jsonl([chat("What is 2+2?", "4.", category="math"), chat("Hi", "Hello!"),
                        chat("Bye", "Bye!", category=3)])
    loaded = load_prompts(path, chatml, skip_bad_lines=True)
    assert [p.category for p in loaded.prompts] == ["math", ""]
    (bad,) = loaded.report.skipped_lines
    assert "'category' must be a non-empty string" in str(bad)
