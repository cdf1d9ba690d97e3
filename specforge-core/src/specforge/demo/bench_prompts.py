"""The built-in prompt set of `specforge bench` for demo runs: the demo's held-out chats, by task.

The held-out split is disjoint from the training data by user message (``tasks.build_splits``),
so the set measures a draft on prompts it never saw; its ``category`` is the demo task (the
conversation id carries it), so the bench reports τ per task.
"""

from __future__ import annotations

import json
from pathlib import Path

from specforge.demo.tasks import TASKS, read_jsonl

PER_TASK = 8  # prompts per task: 40 in all, a few minutes per draft on two CPU cores


def bench_records(heldout_path: Path, per_task: int = PER_TASK) -> list[dict]:
    """The first ``per_task`` held-out chats of each task, grouped by task (tasks in name order)."""
    by_task: dict[str, list[dict]] = {task: [] for task in sorted(TASKS)}
    for conv in read_jsonl(heldout_path):
        chosen = by_task[conv.task]
        if len(chosen) < per_task:
            chosen.append({**conv.to_record(), "category": conv.task})
    return [record for records in by_task.values() for record in records]


def write_bench_prompts(out: Path, cache_dir: Path | str | None = None) -> Path:
    """Write the set as conversations JSONL to ``out`` (the demo assets are built first if need be)."""
    from specforge.demo.assets import ensure_demo_assets

    assets = ensure_demo_assets(cache_dir, progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bench_records(assets.heldout_path)),
                   encoding="utf-8")
    return out
