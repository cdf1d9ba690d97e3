"""Fixtures of the specforge-sglang tests that run in the main venv (where SGLang is never installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from specforge.testing.tiny_models import make_tiny_target


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_target(tmp_path_factory.mktemp("sglang-qwen3"), "qwen3", num_layers=4)
