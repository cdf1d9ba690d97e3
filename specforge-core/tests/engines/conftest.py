"""Tiny targets shared by the engine tests (built once per session, offline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from specforge.testing.tiny_models import make_tiny_target


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_target(tmp_path_factory.mktemp("qwen3"), "qwen3", num_layers=4, mask_token="<|mask|>")


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_target(tmp_path_factory.mktemp("llama"), "llama", num_layers=3)


@pytest.fixture(scope="session")
def qwen2_tied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_target(tmp_path_factory.mktemp("qwen2"), "qwen2", num_layers=2, tie_embeddings=True)


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run ~100x faster on one thread than with OpenMP threads fighting over 2 busy cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
