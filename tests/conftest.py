"""Shared test setup: one cache for demo assets and tiny models per test session (CI: per run)."""

from __future__ import annotations

import os
from pathlib import Path

# Build shared assets once: CI points SPECFORGE_CACHE_DIR at one folder for the whole run.
os.environ.setdefault("SPECFORGE_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".cache" / "specforge"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models on a shared 2-core machine: more threads only contend (10-100x slower forwards).
os.environ.setdefault("OMP_NUM_THREADS", "1")
