"""Fixtures for the demo tests: the shared cached build, and cheap data+tokenizer builds."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_assets():
    """The real demo build in the shared cache ($SPECFORGE_CACHE_DIR): built once per CI run."""
    from specforge.demo.assets import ensure_demo_assets

    return ensure_demo_assets(progress=False)


@pytest.fixture(scope="session")
def data_and_tokenizer(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Data and tokenizer alone (seconds, no target) built into a fresh directory."""
    from specforge.demo.assets import build_data_and_tokenizer

    root = tmp_path_factory.mktemp("demo-data")
    return root, build_data_and_tokenizer(root)
