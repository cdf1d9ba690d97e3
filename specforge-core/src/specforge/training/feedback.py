"""What a person watching a run sees: a progress bar and metrics.jsonl (observers add the rest)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

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
    """A tqdm bar with loss, tokens/s and ETA on rank 0; plain log lines when not a terminal."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        self._enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
        self._total = total

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}")
        elif self._enabled and (step == self._total or step % max(1, self._total // 10) == 0):
            log.info("step %d/%d loss %.4f tokens/s %.0f", step, self._total, loss, tokens_per_s)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
