"""The ``specforge`` pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

Loaded by pytest in every environment where specforge-core is installed, so it imports no
torch and no plugin at load time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def specforge_plugin() -> Iterator[Callable[..., Any]]:
    """Register throwaway plugin objects for one test; they are removed afterwards.

        def test_x(specforge_plugin):
            class P:
                @hookimpl
                def specforge_register_strategies(self, register): ...
            specforge_plugin(P())
    """
    from specforge import registry

    names: list[str] = []

    def add(obj: Any, name: str | None = None) -> Any:
        name = name or f"test-plugin-{len(names)}"
        registry.add_plugin(obj, name)
        names.append(name)
        return obj

    yield add
    for name in names:
        registry.remove_plugin(name)


@pytest.fixture(scope="session")
def specforge_tiny_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer random Qwen3 target directory (tokenizer included); its wide initialisation gives the
    lm_head enough range for a draft to learn in a few dozen steps."""
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("target") / "tiny-qwen3"
    make_tiny_target(path, arch="qwen3", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0,
                     initializer_range=0.2)
    return path


@pytest.fixture(scope="session")
def specforge_chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 short conversations (digits and letters only, so any tiny tokenizer covers them), as JSONL."""
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    lines = []
    for i in range(24):
        a, b = i % 7, (i * 3) % 5
        lines.append({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"add {a} and {b}"},
            {"role": "assistant", "content": f"{a} plus {b} is {a + b}, so the answer is {a + b}"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
