"""Settings shared by the harness conftest and tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

import os

DEVICE = os.environ.get("SPECFORGE_SGLANG_TEST_DEVICE", "cpu")
"""Where SGLang and the hf reference run: ``cpu`` (the harness, CI) or ``cuda`` (a GPU machine; see the README)."""

TOLERANCE = 1e-5 if DEVICE == "cpu" else 1e-3
"""atol = rtol for captured features against the hf engine. CPU float32: measured max |diff| ~1e-6.
The GPU value is a guess for other attention kernels, not verified here."""
