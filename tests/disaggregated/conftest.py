"""A tiny target and conversations for disaggregated runs (same shapes as the training tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("target") / "tiny-qwen3"
    make_tiny_target(path, arch="qwen3", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0,
                     initializer_range=0.2)
    return path


@pytest.fixture(scope="session")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    lines = []
    for i in range(24):
        a, b = i % 7, (i * 3) % 5
        lines.append({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"add {a} and {b}"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}, so the answer is {a + b}"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
