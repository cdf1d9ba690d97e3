"""``checkpoints/best``: the checkpoint with the highest measured τ, kept through rotation and resume.

``best`` is a relative symlink to a ``step-N`` folder, and ``best.json`` says why (step, τ, and
how it was chosen). Rotation (``training.keep_checkpoints``) never deletes the folder ``best``
points to. With ``training.eval_every`` the trainer evaluates every that many steps and links
the best τ seen; without it, ``best`` is the final checkpoint (``"chosen": "final"``): nothing
was measured during training to choose by. Torch-free, so ``specforge`` commands can read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from specforge.training.layout import STEP_DIR

BEST_LINK = "best"
BEST_FILE = "best.json"


@dataclass(frozen=True)
class Best:
    step: int
    tau: float | None  # None: chosen as the final checkpoint, not by τ
    chosen: str  # "eval/tau" or "final"

    def to_json(self) -> dict:
        return {"step": self.step, "tau": self.tau, "chosen": self.chosen}


def read_best(root: Path) -> Best | None:
    """The recorded best checkpoint under ``root`` (``checkpoints/``), if it still exists."""
    try:
        data = json.loads((root / BEST_FILE).read_text())
        best = Best(int(data["step"]), data.get("tau"), str(data.get("chosen", "eval/tau")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return best if (root / BEST_LINK).resolve().is_dir() else None


def best_step_dir(root: Path) -> str | None:
    """The name of the ``step-N`` folder ``best`` links to (what rotation must keep)."""
    link = root / BEST_LINK
    if not link.is_symlink():
        return None
    name = os.readlink(link)
    return name if STEP_DIR.match(name) else None


def mark_best(root: Path, step_dir: Path, best: Best) -> None:
    """Point ``best`` at ``step_dir`` (same folder) and record why; each file is replaced atomically."""
    tmp_link = root / f".{BEST_LINK}.tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(step_dir.name, tmp_link)
    os.replace(tmp_link, root / BEST_LINK)
    tmp_file = root / f".{BEST_FILE}.tmp"
    tmp_file.write_text(json.dumps(best.to_json()) + "\n")
    os.replace(tmp_file, root / BEST_FILE)
