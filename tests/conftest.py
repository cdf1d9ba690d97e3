"""Shared test setup: one cache for demo assets and tiny models per test session (CI: per run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Build shared assets once: CI points SPECFORGE_CACHE_DIR at one folder for the whole run.
os.environ.setdefault("SPECFORGE_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "specforge"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a shared 2-core machine: more threads only contend (10-100x slower forwards).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer random Qwen3 target; its wide initialisation gives the lm_head enough range for a
    draft to learn fast in a few dozen steps."""
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("target") / "tiny-qwen3"
    make_tiny_target(path, arch="qwen3", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0,
                     initializer_range=0.2)
    return path


@pytest.fixture(scope="session")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 short conversations (digits and letters only, so any tiny tokenizer covers them)."""
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    lines = []
    for i in range(24):
        a, b = i % 7, (i * 3) % 5
        lines.append({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"add {a} and {b}"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}, so the answer is {a + b}"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
