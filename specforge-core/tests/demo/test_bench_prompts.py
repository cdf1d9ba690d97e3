"""The built-in prompt set of `specforge bench`: held-out demo chats, a few per task, categorised."""

from __future__ import annotations

from collections import Counter

from specforge.demo.bench_prompts import PER_TASK, bench_records
from specforge.demo.tasks import TASKS, read_jsonl


def test_the_built_in_set_is_held_out_chats_by_task_never_training_ones(data_and_tokenizer) -> None:
    root, _ = data_and_tokenizer
    records = bench_records(root / "data" / "heldout.jsonl")
    assert Counter(r["category"] for r in records) == {task: PER_TASK for task in TASKS}
    held_out = {c.id: c for c in read_jsonl(root / "data" / "heldout.jsonl")}
    trained = {c.user for c in read_jsonl(root / "data" / "train.jsonl")}
    for r in records:
        source = held_out[r["id"]]
        assert r["category"] == source.task and r["messages"][0]["content"] == source.user
        assert source.user not in trained
