"""Where checkpoints are on disk, torch-free: ``checkpoints/step-00000012/`` under a run folder."""

from __future__ import annotations

import re
from pathlib import Path

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "state.pt"
WEIGHTS_FILE = "draft.safetensors"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def is_checkpoint(path: Path) -> bool:
    """A folder a completed checkpoint save renamed into place (temp folders never count)."""
    return path.is_dir() and bool(STEP_DIR.match(path.name)) and (path / STATE_FILE).exists()


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``."""
    if not root.is_dir():
        return None
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    return steps[-1][1] if steps else None
