"""What a run ends with, on the draft it trained: the export, eval.json, plot.png, the τ line.

``write_export`` is also what `specforge export` calls after rebuilding a draft from a folder:
the strategy writes the format, every plugin's ``specforge_check_export`` judges it, and only an
export without problems replaces ``out_dir`` (atomically, files readable like any model's).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import Strategy, TrainResult
from specforge.errors import SpecforgeError
from specforge.export import new_file_mode
from specforge.run.folder import EXPORT_MARKER

log = logging.getLogger(__name__)


class ExportError(SpecforgeError):
    """An export a serving engine would load wrongly (or not at all)."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    format: str
    info: dict


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    steps: int
    final_loss: float
    checkpoint: Path
    export_dir: Path | None = None
    report: dict | None = None

    @property
    def summary(self) -> str | None:
        from specforge.evaluation.evaluate import summary_line

        return summary_line(self.report) if self.report else None


def _marker(config: RunConfig, fmt: str) -> dict:
    return {"strategy": config.run.strategy, "strategy_options": config.sections()["strategy"],
            "target_model": config.target.model, "format": fmt,
            "eval_prompts": config.data.eval_path or None, "demo": config.run.demo}


def _readable(root: Path) -> None:
    """Files get the mode the umask gives new files, folders the matching directory mode."""
    file_mode = new_file_mode()
    dir_mode = file_mode | ((file_mode & 0o444) >> 2)  # r -> x, as mkdir would give
    root.chmod(dir_mode)
    for path in root.rglob("*"):
        path.chmod(dir_mode if path.is_dir() else file_mode)


def write_export(config: RunConfig, strategy: Strategy, draft: Any, out_dir: Path, fmt: str) -> ExportResult:
    """Export ``draft`` as ``fmt`` into ``out_dir``; any problem a plugin reports fails the export."""
    from specforge.registry import get_registry

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise ExportError(f"cannot write the export to {out_dir}: {exc.strerror or exc}; choose a writable "
                          f"--output-dir") from None
    try:
        info = strategy.export(draft, tmp, fmt)
        (tmp / EXPORT_MARKER).write_text(json.dumps(_marker(config, fmt), indent=2) + "\n")
        problems = get_registry().check_export(config.run.strategy, fmt, tmp, info)
        if problems:
            raise ExportError(f"the {fmt!r} export has problems:\n  " + "\n  ".join(problems))
        _readable(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    log.info("exported the draft (%s) to %s", fmt, out_dir)
    return ExportResult(out_dir=out_dir, format=fmt, info=info)


def finish(run: Any, result: TrainResult) -> RunOutcome:
    """Global rank 0, after training: export and evaluate the trained draft in memory."""
    from specforge.run.evaluate import evaluate_before_after

    cfg = run.config
    export_dir = None
    if cfg.export.enabled:
        export_dir = write_export(cfg, run.strategy, result.draft, run.run_dir / "export", cfg.export_format).out_dir
    report = evaluate_before_after(run, result.draft) if cfg.eval.enabled else None
    return RunOutcome(run_dir=run.run_dir, steps=result.steps, final_loss=result.final_loss,
                      checkpoint=result.checkpoint, export_dir=export_dir, report=report)
