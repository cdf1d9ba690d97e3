"""Entry module (``[project.entry-points.specforge] wandb = "specforge_wandb.plugin"``).

Observer hooks only (they run on global rank 0). A run is logged when ``WANDB_PROJECT`` is set:
installing the package alone changes nothing, so it can sit in every environment. Importing this
module imports neither torch nor wandb; wandb loads when a logged run starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from specforge.api import RunContext, TrainResult, hookimpl
from specforge_wandb.observer import WandbRun

ACTIVATE = "WANDB_PROJECT"

_runs: dict[Path, WandbRun] = {}  # by run folder: one process may train several runs in turn


@hookimpl
def specforge_on_run_start(run: RunContext) -> None:
    if os.environ.get(ACTIVATE):
        _runs[run.run_dir] = WandbRun.start(run)


@hookimpl
def specforge_on_step_end(run: RunContext, step: int, metrics: dict[str, float]) -> None:
    logged = _runs.get(run.run_dir) if _runs else None  # nothing to look up in most runs
    if logged is not None:
        logged.log(step, metrics)


@hookimpl
def specforge_on_run_end(run: RunContext, result: TrainResult) -> None:
    logged = _runs.get(run.run_dir) if _runs else None
    if logged is not None:
        logged.trained(result)


@hookimpl
def specforge_on_run_finished(run: RunContext, report: dict | None, export_dir: Path | None) -> None:
    logged = _runs.pop(run.run_dir, None) if _runs else None
    if logged is not None:
        logged.finish(report)
