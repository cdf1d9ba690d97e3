"""Golden loss masks: the trained text of real-vocabulary tokenizations, written out by hand.

Each expected string was checked against the template by reading it: the assistant header is
never trained; the reply and what the template writes to close the turn always are.
"""

from __future__ import annotations

from specforge.data import load_samples


def trained_runs(tok, sample) -> list[str]:
    """Decoded text of each run of consecutive trained tokens."""
    runs: list[list[int]] = []
    prev = 0
    for token, m in zip(sample.input_ids, sample.loss_mask):
        if m and not prev:
            runs.append([])
        if m:
            runs[-1].append(token)
        prev = m
    return [tok.decode(r, skip_special_tokens=False) for r in runs]


def full_text(tok, sample) -> str:
    return tok.decode(list(sample.input_ids), skip_special_tokens=False)


def only_sample(path, tok, **kwargs):
    loaded = load_samples(path, tok, max_length=kwargs.pop("max_length", 4096), **kwargs)
    assert len(loaded.samples) == 1
    return loaded.samples[0]


def user(text):
    return {"role": "user", "content": text}


def assistant(text, **extra):
    return {"role": "assistant", "content": text, **extra}


WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}


# ----------------------------------------------------------------------------- ChatML (Qwen2.5)


def test_chatml_single_turn_trains_reply_and_im_end_newline_not_header(chatml, write_jsonl):
    path = write_jsonl([{"messages": [user("What is 2+2?"), assistant("The answer is 4.")]}])
    sample = only_sample(path, chatml)
    assert full_text(chatml, sample) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\nThe answer is 4.<|im_end|>\n"
    )
    assert trained_runs(chatml, sample) == ["The answer is 4.<|im_end|>\n"]


def test_chatml_multi_turn_with_system_prompt_trains_every_reply(chatml, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "system", "content": "You are terse."}, user("Hi"),
                                      assistant("Hello!"), user("Bye"), assistant("Goodbye.")]}])
    sample = only_sample(path, chatml)
    assert full_text(chatml, sample).startswith("<|im_start|>system\nYou are terse.<|im_end|>\n")
    assert trained_runs(chatml, sample) == ["Hello!<|im_end|>\n", "Goodbye.<|im_end|>\n"]


def test_chatml_tool_call_is_trained_and_tool_result_is_not(chatml, write_jsonl):
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    path = write_jsonl([{"tools": [WEATHER_TOOL], "messages": [
        user("Weather in Paris?"),
        assistant("", tool_calls=[call]),
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
        assistant("It is 18C in Paris."),
    ]}])
    sample = only_sample(path, chatml)
    text = full_text(chatml, sample)
    assert "<tools>\n" + '{"type": "function", "function": {"name": "get_weather"' in text
    assert "<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>\n" in text
    assert trained_runs(chatml, sample) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
        "It is 18C in Paris.<|im_end|>\n",
    ]


def test_opening_assistant_message_answers_nothing_and_is_not_trained(chatml, write_jsonl):
    path = write_jsonl([{"messages": [assistant("Welcome!"), user("Hi"), assistant("Hello!"),
                                      assistant("Anything else?")]}])
    sample = only_sample(path, chatml)
    assert "<|im_start|>assistant\nWelcome!<|im_end|>\n<|im_start|>user\nHi" in full_text(chatml, sample)
    assert trained_runs(chatml, sample) == ["Hello!<|im_end|>\n", "Anything else?<|im_end|>\n"]


def test_sharegpt_form_renders_like_openai_form(chatml, write_jsonl):
    path = write_jsonl([{"conversations": [{"from": "system", "value": "Be kind."},
                                           {"from": "human", "value": "Hi"},
                                           {"from": "gpt", "value": "Hello there."},
                                           {"from": "user", "value": "Again"},
                                           {"from": "chatgpt", "value": "Hello again."}]}],
                       name="sharegpt.jsonl")
    sample = only_sample(path, chatml)
    assert sample.sample_id == "sharegpt-1"
    assert full_text(chatml, sample) == (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello there.<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
        "<|im_start|>assistant\nHello again.<|im_end|>\n"
    )
    assert trained_runs(chatml, sample) == ["Hello there.<|im_end|>\n", "Hello again.<|im_end|>\n"]


# ----------------------------------------------------------------------------- Qwen3 thinking


def test_qwen3_multi_turn_strips_earlier_think_and_trains_last_reasoning(qwen3, write_jsonl):
    path = write_jsonl([{"messages": [
        user("What is 2+2?"), assistant("4.", reasoning_content="Add two and two."),
        user("And times 3?"), assistant("12.", reasoning_content="4 times 3 is 12."),
    ]}])
    sample = only_sample(path, qwen3)
    assert full_text(qwen3, sample) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n"
        "<|im_start|>user\nAnd times 3?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n4 times 3 is 12.\n</think>\n\n12.<|im_end|>\n"
    )
    assert trained_runs(qwen3, sample) == [
        "4.<|im_end|>\n",
        "<think>\n4 times 3 is 12.\n</think>\n\n12.<|im_end|>\n",
    ]


def test_qwen3_inline_think_in_content_is_treated_like_reasoning_content(qwen3, write_jsonl):
    path = write_jsonl([{"messages": [
        user("Hi"), assistant("<think>\nGreet back.\n</think>\n\nHello!"),
        user("Bye"), assistant("<think>\nSay bye.\n</think>\n\nBye!"),
    ]}])
    sample = only_sample(path, qwen3)
    assert trained_runs(qwen3, sample) == [
        "Hello!<|im_end|>\n",
        "<think>\nSay bye.\n</think>\n\nBye!<|im_end|>\n",
    ]


def test_qwen3_empty_think_block_is_trained_when_thinking_is_on(qwen3, write_jsonl):
    path = write_jsonl([{"messages": [user("What is 2+2?"), assistant("The answer is 4.")]}])
    sample = only_sample(path, qwen3)
    assert trained_runs(qwen3, sample) == ["<think>\n\n</think>\n\nThe answer is 4.<|im_end|>\n"]


def test_qwen3_empty_think_block_is_prompt_when_thinking_is_off(qwen3, write_jsonl):
    path = write_jsonl([{"messages": [user("What is 2+2?"), assistant("The answer is 4.")]}])
    sample = only_sample(path, qwen3, template_kwargs={"enable_thinking": False})
    assert full_text(qwen3, sample).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\nThe answer is 4.<|im_end|>\n")
    assert trained_runs(qwen3, sample) == ["The answer is 4.<|im_end|>\n"]


def test_qwen3_tool_chain_before_a_later_query_is_located_after_history_rewrite(qwen3, write_jsonl):
    # Rendering the first turns alone keeps the first reply's <think>; the full render drops it,
    # so the later turns are found by search, not by prefix.
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    path = write_jsonl([{"tools": [WEATHER_TOOL], "messages": [
        {"role": "system", "content": "Use tools."},
        user("Weather in Paris?"),
        assistant("", reasoning_content="Need the tool.", tool_calls=[call]),
        {"role": "tool", "content": "18C"},
        assistant("It is 18C.", reasoning_content="Answer from the tool."),
        user("Thanks"),
        assistant("You're welcome."),
    ]}])
    sample = only_sample(path, qwen3)
    text = full_text(qwen3, sample)
    assert "Need the tool." not in text and "Answer from the tool." not in text
    assert text.startswith("<|im_start|>system\nUse tools.\n\n# Tools\n\n<tools>\n")
    assert text.endswith(
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n18C\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 18C.<|im_end|>\n"
        "<|im_start|>user\nThanks<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nYou're welcome.<|im_end|>\n"
    )
    assert trained_runs(qwen3, sample) == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n',
        "It is 18C.<|im_end|>\n",
        "<think>\n\n</think>\n\nYou're welcome.<|im_end|>\n",
    ]


def test_qwen3_tool_chain_after_last_query_keeps_reasoning_of_each_step(qwen3, write_jsonl):
    call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    path = write_jsonl([{"tools": [WEATHER_TOOL], "messages": [
        user("Weather in Oslo?"),
        assistant("", reasoning_content="Call the tool.", tool_calls=[call]),
        {"role": "tool", "content": "-3C"},
        assistant("It is -3C.", reasoning_content="Report it."),
    ]}])
    sample = only_sample(path, qwen3)
    assert trained_runs(qwen3, sample) == [
        '<think>\nCall the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Oslo"}}\n</tool_call><|im_end|>\n',
        "<think>\nReport it.\n</think>\n\nIt is -3C.<|im_end|>\n",
    ]


# ----------------------------------------------------------------------------- Llama-3


def test_llama3_multi_turn_trains_reply_and_eot_not_header(llama3, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "system", "content": "Be brief."}, user("Hi"),
                                      assistant("Hello!"), user("Name a color."), assistant("  Blue.  ")]}])
    sample = only_sample(path, llama3)
    assert full_text(llama3, sample) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nBlue.<|eot_id|>"
    )
    assert trained_runs(llama3, sample) == ["Hello!<|eot_id|>", "Blue.<|eot_id|>"]
    assert sample.input_ids[0] == llama3.convert_tokens_to_ids("<|begin_of_text|>")
    assert sample.input_ids.count(sample.input_ids[0]) == 1  # BOS once: the template wrote it


def test_user_template_file_replaces_the_tokenizer_template(qwen3, write_jsonl):
    from pathlib import Path

    template = Path(__file__).parent / "fixtures" / "templates" / "chatml.jinja"
    path = write_jsonl([{"messages": [user("Hi"), assistant("Hello!")]}])
    sample = only_sample(path, qwen3, chat_template=template)
    assert full_text(qwen3, sample).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert trained_runs(qwen3, sample) == ["Hello!<|im_end|>\n"]  # no <think> block: not Qwen3's template
