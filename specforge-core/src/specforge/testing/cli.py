"""Run the real ``specforge`` command in a fresh process, the way a user does (for tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from specforge.faults import ENV as KILL_ENV


def run_specforge(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                  check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m specforge ARGS``; raises with both output streams when ``check`` and it fails."""
    full_env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "specforge", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"specforge {' '.join(args)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc
