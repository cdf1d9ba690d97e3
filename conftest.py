"""Test settings for every package of this repository (`make test` runs them all).

Shared assets are built once per session into one cache (CI: one per run); tiny models on a
shared 2-core machine run with one thread (more only contend: 10-100x slower forwards).
Fixtures for tests (and for plugin authors) come from the ``specforge`` pytest plugin.
No test run logs to Weights & Biases: specforge-wandb is installed for its own (offline) tests,
and a developer's ``WANDB_PROJECT`` would otherwise send every test run there.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("SPECFORGE_CACHE_DIR", str(Path(__file__).resolve().parent / ".cache" / "specforge"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("WANDB_PROJECT", None)
