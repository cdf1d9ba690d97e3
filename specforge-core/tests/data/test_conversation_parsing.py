"""Reading conversation JSONL: both message forms, role aliases, extras, and bad lines by file:line."""

from __future__ import annotations

import json
import logging

import pytest

from specforge.data import DataError, load_samples
from specforge.data.conversations import parse_conversation
from specforge.data.reader import LineSink, read_conversations


def test_openai_messages_and_conversations_keys_parse_alike():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert parse_conversation({"messages": msgs})[1] == parse_conversation({"conversations": msgs})[1]


def test_sharegpt_roles_map_to_user_and_assistant():
    raw = [{"from": "system", "value": "S"}, {"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
           {"from": "user", "value": "c"}, {"from": "chatgpt", "value": "d"}, {"from": "Human", "value": "e"},
           {"from": "bing", "value": "f"}, {"from": "human", "value": "g"}, {"from": "bard", "value": "h"}]
    _, messages, _ = parse_conversation({"conversations": raw})
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user",
                                          "assistant", "user", "assistant"]
    assert [m.content for m in messages] == list("Sabcdefgh")


def test_message_extras_are_kept_and_unknown_keys_dropped():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    _, messages, tools = parse_conversation({"id": 7, "tools": [{"type": "function"}], "messages": [
        {"role": "user", "content": "q", "weight": 0.5},
        {"role": "assistant", "content": None, "tool_calls": [call], "reasoning_content": "think"},
        {"role": "tool", "content": "r", "name": "f", "tool_call_id": "c1"},
    ]})
    user, reply, tool = (m.to_template_dict() for m in messages)
    assert user == {"role": "user", "content": "q"}
    assert reply == {"role": "assistant", "content": "", "reasoning_content": "think", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}
    assert tool == {"role": "tool", "content": "r", "name": "f", "tool_call_id": "c1"}
    assert tools == ({"type": "function"},)


def test_text_content_parts_are_joined():
    _, messages, _ = parse_conversation({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]}]})
    assert messages[0].content == "Hello"


def test_ids_come_from_the_line_else_file_stem_and_line_number(tmp_path):
    path = tmp_path / "chats.jsonl"
    row = {"messages": [{"role": "user", "content": "x"}]}
    path.write_text(json.dumps({"id": "abc", **row}) + "\n\n" + json.dumps({"id": 12, **row}) + "\n"
                    + json.dumps(row) + "\n")
    ids = [c.conv_id for c in read_conversations(path, LineSink(skip=False))]
    assert ids == ["abc", "12", "chats-4"]  # line 2 is blank: ignored, but lines keep their numbers


GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


@pytest.mark.parametrize(("line", "reason"), [
    ('{"messages": [', "invalid JSON"),
    ("[1, 2]", "expected a JSON object per line"),
    ('{"id": "x"}', "no 'messages' (or 'conversations') list"),
    ('{"messages": []}', "'messages' must be a non-empty list"),
    ('{"messages": [{"role": "robot", "content": "beep"}]}', "message 0 has unknown role 'robot'"),
    ('{"messages": [{"from": "alien", "value": "hi"}]}', "message 0 has unknown role 'alien'"),
    ('{"messages": [{"role": "user", "content": 5}]}', "message 0: 'content' must be a string, got int"),
    ('{"messages": [{"role": "user"}]}', "message 0 has no 'content'"),
    ('{"messages": [{"content": "hi"}]}', "neither 'role' (OpenAI form) nor 'from' (ShareGPT form)"),
    ('{"messages": ["hi"]}', "message 0 is a str, expected an object"),
    ('{"id": [1], "messages": [{"role": "user", "content": "hi"}]}', "'id' must be a string or an integer"),
    ('{"tools": {"a": 1}, "messages": [{"role": "user", "content": "hi"}]}', "'tools' must be a list"),
    ('{"messages": [{"role": "assistant", "content": "x", "tool_calls": "nope"}]}',
     "'tool_calls' is a string but not valid JSON"),
    ('{"messages": [{"role": "assistant", "content": "x", "reasoning_content": 3}]}',
     "'reasoning_content' must be a string"),
    ('{"id": "bad-1", "messages": [{"role": "user", "content": "hi"}]}', "duplicate id 'bad-1'"),
])
def test_bad_line_error_names_file_line_and_problem(chatml, write_jsonl, line, reason):
    path = write_jsonl([GOOD, line, GOOD], name="bad.jsonl")
    with pytest.raises(DataError) as info:
        load_samples(path, chatml, max_length=64)
    message = str(info.value)
    assert f"{path}:2: " in message
    assert reason in message
    assert "--skip-bad-lines" in message


def test_skip_bad_lines_skips_counts_and_logs_them(chatml, write_jsonl, caplog):
    path = write_jsonl([GOOD, "not json", '{"messages": [{"role": "robot", "content": "x"}]}', GOOD],
                       name="mixed.jsonl")
    with caplog.at_level(logging.WARNING, logger="specforge.data"):
        loaded = load_samples(path, chatml, max_length=64, skip_bad_lines=True)
    assert sorted(s.sample_id for s in loaded.samples) == ["mixed-1", "mixed-4"]
    assert loaded.report.num_skipped == 2
    assert [(b.line, b.reason.split(" (")[0]) for b in loaded.report.skipped_lines] == [
        (2, "invalid JSON"), (3, "message 0 has unknown role 'robot'")]
    assert "2 bad line(s) skipped" in caplog.text and f"{path}:3" in caplog.text


def test_missing_data_file_is_a_data_error(chatml, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_samples(tmp_path / "nope.jsonl", chatml, max_length=64)
