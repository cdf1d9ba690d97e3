"""What a person watching a run sees: progress (a bar or log lines) and metrics.jsonl (observers add the rest)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from specforge.progress import PhaseProgress

log = logging.getLogger(__name__)


class MetricsLog:
    """One JSON object per optimizer step in ``metrics.jsonl`` (TensorBoard and W&B are observers).

    On resume the file is cut back to the checkpoint's step, so every step appears once.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(f"{line}\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Progress:
    """Training progress on rank 0 (``specforge.progress``): loss and tokens/s with elapsed time and ETA."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._phase = PhaseProgress("train", total, "steps", log=log, initial=initial, enabled=enabled)

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self._phase.update(step - self._phase.done, loss=f"{loss:.4f}", **{"tokens/s": f"{tokens_per_s:.0f}"})

    def close(self) -> None:
        self._phase.close()
