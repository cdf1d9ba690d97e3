"""The synthetic chat tasks: right answers, disjoint splits, plain OpenAI records, determinism."""

from __future__ import annotations

import json
import re

from specforge.demo import recipe
from specforge.demo.tasks import Conversation, build_splits, read_jsonl, write_jsonl


def _splits():
    return build_splits(recipe.SEED, recipe.TRAIN_PER_TASK, recipe.HELDOUT_PER_TASK)


def test_splits_have_the_recipe_sizes_and_every_task_in_both():
    train, heldout = _splits()
    assert len(train) == sum(recipe.TRAIN_PER_TASK.values())
    assert len(heldout) == recipe.HELDOUT_PER_TASK * len(recipe.TRAIN_PER_TASK) >= 200
    assert {c.task for c in train} == {c.task for c in heldout} == set(recipe.TRAIN_PER_TASK)


def test_train_and_heldout_share_no_user_message_and_no_id():
    train, heldout = _splits()
    assert not {c.user for c in train} & {c.user for c in heldout}
    ids = [c.id for c in train + heldout]
    assert len(ids) == len(set(ids))


def test_same_seed_same_conversations_other_seed_other_conversations():
    assert _splits() == _splits()
    assert build_splits(recipe.SEED + 1, recipe.TRAIN_PER_TASK, recipe.HELDOUT_PER_TASK) != _splits()


def test_arithmetic_answers_are_correct():
    train, heldout = _splits()
    checked = 0
    for conv in train + heldout:
        if conv.task != "arithmetic":
            continue
        a, op, b = re.search(r"(\d) ?([+-]) ?(\d)", conv.user).groups()
        expected = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert conv.assistant.endswith(f"So {a} {op} {b} = {expected}."), conv
        checked += 1
    assert checked > 100


def test_copy_reverse_and_sort_answers_hold_the_transformed_list():
    train, _ = _splits()
    expect = {"copy": lambda xs: xs, "reverse": lambda xs: xs[::-1], "sort": sorted}
    for conv in train:
        if conv.task in expect:
            items = conv.user.split(": ", 1)[1].split(" ")
            assert 3 <= len(items) <= 5
            assert f": {' '.join(expect[conv.task](items))}." in conv.assistant, conv


def test_greeting_answers_use_the_name_from_the_prompt():
    train, _ = _splits()
    for conv in train:
        if conv.task == "greeting":
            name = re.search(r"(?:I am|name is|I'm|there,) (\w+)", conv.user).group(1)
            assert conv.assistant.startswith(f"Hello, {name}!"), conv


def test_jsonl_is_plain_openai_messages_and_round_trips(tmp_path):
    train, _ = _splits()
    path = tmp_path / "train.jsonl"
    write_jsonl(train[:5], path)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"id", "messages"}
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert read_jsonl(path) == train[:5]
    assert isinstance(read_jsonl(path)[0], Conversation)
