"""The core's TensorBoard writer (``run.tensorboard``), built on the observer hooks any plugin has.

Every numeric field of each metrics.jsonl line becomes a scalar at its step, in
``runs/<name>/tensorboard/``. A session's event file starts with ``purge_step`` at the first step
it writes, so after a resume TensorBoard drops what the interrupted session logged past its
checkpoint and shows every step once, with the values metrics.jsonl keeps. Importing this module
imports no torch; the writer loads when a run with ``run.tensorboard`` starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.contracts import RunContext
from specforge.observe import final_scalars
from specforge.plugin import hookimpl

FOLDER = "tensorboard"


class TensorboardLog:
    """Scalars of metrics lines in one folder; the writer opens at the first step (its purge step)."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # fails here, before step 1, if it cannot load

        self.folder = folder
        self._open = SummaryWriter
        self._writer: Any = None
        self.last_step = 0

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = self._open(str(self.folder), purge_step=step)
        self.last_step = step
        for key, value in metrics.items():
            if key != "step" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()  # a killed run keeps every step it logged

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


_logs: dict[Path, TensorboardLog] = {}  # by run folder: one process may run several runs in turn


@hookimpl
def specforge_on_run_start(run: RunContext) -> None:
    # A run of this folder that raised before it finished (export, final evaluation) left its
    # writer open: close it, so its events are complete and its file handle is not leaked.
    stale = _logs.pop(run.run_dir, None)
    if stale is not None:
        stale.close()
    if run.config.run.tensorboard:
        _logs[run.run_dir] = TensorboardLog(run.run_dir / FOLDER)


@hookimpl
def specforge_on_step_end(run: RunContext, step: int, metrics: dict[str, float]) -> None:
    log = _logs.get(run.run_dir) if _logs else None  # nothing to look up in most runs
    if log is not None:
        log.write(step, metrics)


@hookimpl
def specforge_on_run_finished(run: RunContext, report: dict | None, export_dir: Path | None) -> None:
    """The final τ (``final/tau_before``, ``final/tau_after``, ``final/speedup``) at the last step."""
    log = _logs.pop(run.run_dir, None) if _logs else None
    if log is not None:
        scalars = final_scalars(report)
        if scalars:
            log.write(log.last_step, scalars)
        log.close()
