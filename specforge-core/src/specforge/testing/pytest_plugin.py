"""The ``specforge`` pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

Loaded by pytest in every environment where specforge-core is installed, so it imports no
torch and no plugin at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
