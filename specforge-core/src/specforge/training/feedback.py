"""What a person watching a run sees: progress (a bar or log lines), metrics.jsonl, TensorBoard when installed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from specforge.progress import PhaseProgress

log = logging.getLogger(__name__)


class MetricsLog:
    """One JSON object per optimizer step in ``metrics.jsonl``; TensorBoard events if available.

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
        self._tb = _tensorboard_writer(run_dir / "tensorboard")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _tensorboard_writer(path: Path) -> Any:
    try:
        import tensorboard  # noqa: F401  (only to know it is installed)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


class Progress:
    """Training progress on rank 0 (``specforge.progress``): loss and tokens/s with elapsed time and ETA."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._phase = PhaseProgress("train", total, "steps", log=log, initial=initial, enabled=enabled)

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self._phase.update(step - self._phase.done, loss=f"{loss:.4f}", **{"tokens/s": f"{tokens_per_s:.0f}"})

    def close(self) -> None:
        self._phase.close()
