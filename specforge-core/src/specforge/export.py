"""`specforge export`: write a serving directory from a run and let every plugin judge it."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from specforge.errors import SpecforgeError
from specforge.trained import frozen_target_info, open_run, trained_draft, write_export_marker

log = logging.getLogger(__name__)


class ExportError(SpecforgeError):
    """An export a serving engine would load wrongly (or not at all)."""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    info: dict


def export_run(path: str | Path, fmt: str, out_dir: str | Path | None = None) -> ExportResult:
    """Export the newest checkpoint of a run; any problem reported by a plugin fails the export."""
    from specforge.registry import get_registry

    run = open_run(path)
    target = Path(out_dir) if out_dir else run.run_dir / "export"
    strategy = run.config.strategy.build()
    info = frozen_target_info(run.config.target.model)
    draft = trained_draft(strategy, info, run.checkpoint)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    export_info = strategy.export(draft, tmp, fmt)
    write_export_marker(tmp, run.config, fmt)
    problems = get_registry().check_export(run.config.run.strategy, fmt, tmp, export_info)
    if problems:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"export of {run.checkpoint} as {fmt!r} has problems:\n  " + "\n  ".join(problems))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("exported %s (%s) to %s", run.checkpoint, fmt, target)
    return ExportResult(out_dir=target, info=export_info)
