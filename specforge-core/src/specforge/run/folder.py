"""Run folders on disk: what a path is (``locate``), and who may write into a run folder (``claim``).

``locate`` is the one answer to "run folder, checkpoint folder or export folder?" for
``--resume``, ``--init-draft``, ``specforge export`` and ``specforge eval``. ``claim`` is the one
decision a new run makes about its folder, before anything is written: a folder that holds a
run is refused unless the user resumes it or asked to overwrite it (the old run is moved aside);
the embedded demo replaces its own previous demo run and says so. In a multi-process run only
global rank 0 claims, after the processes have met; a launcher that claimed for its workers
tells them through ``CLAIMED_ENV``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from specforge.errors import ConfigError, UserError
from specforge.training.layout import STATE_FILE, STEP_DIR, WEIGHTS_FILE, find_latest, is_checkpoint

if TYPE_CHECKING:
    from specforge.config import RunConfig

log = logging.getLogger(__name__)

EXPORT_MARKER = "specforge_export.json"  # written into every export: which strategy, which options
CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
CLAIMED_ENV = "SPECFORGE_RUN_FOLDER_CLAIMED"  # set by a launcher that claimed the folder for its workers


@dataclass(frozen=True)
class Located:
    """What a path given on the command line is, and the files that go with it."""

    kind: Literal["run", "checkpoint", "export"]
    path: Path
    run_dir: Path | None = None
    checkpoint: Path | None = None  # a run's newest complete checkpoint (None: none yet)
    config_file: Path | None = None
    marker: dict | None = None  # an export's specforge_export.json

    def require_checkpoint(self, why: str) -> Path:
        if self.checkpoint is None:
            raise UserError(f"run {str(self.path)!r} has no complete checkpoint yet ({why}); train it first, or "
                            f"pass a checkpoint folder (runs/<name>/checkpoints/step-N)")
        for name in (STATE_FILE, WEIGHTS_FILE):
            if not (self.checkpoint / name).is_file():
                raise UserError(f"checkpoint {str(self.checkpoint)!r} lacks {name}: it is incomplete or was "
                                f"damaged; use an earlier checkpoint folder")
        return self.checkpoint


def locate(path: str | Path) -> Located:
    """A run folder (newest checkpoint), a checkpoint folder, or an export folder; else a UserError."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{str(p)!r} does not exist; pass a run folder (runs/<name>), a checkpoint folder or an "
                        f"export folder")
    if (p / EXPORT_MARKER).is_file():
        try:
            marker = json.loads((p / EXPORT_MARKER).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{p / EXPORT_MARKER} is not readable JSON ({exc}); re-export the run") from None
        return Located("export", p, marker=marker)
    if (p / STATE_FILE).is_file() or is_checkpoint(p) or (STEP_DIR.match(p.name) and p.parent.name == CHECKPOINTS):
        run_dir = p.parent.parent
        own = p / CONFIG_FILE
        return Located("checkpoint", p, run_dir=run_dir, checkpoint=p,
                       config_file=own if own.is_file() else run_dir / CONFIG_FILE)
    if (p / CONFIG_FILE).is_file():
        return Located("run", p, run_dir=p, checkpoint=find_latest(p / CHECKPOINTS), config_file=p / CONFIG_FILE)
    raise UserError(f"{str(p)!r} is neither a run folder (with {CONFIG_FILE}), a checkpoint folder (with "
                    f"{STATE_FILE}) nor an export folder (with {EXPORT_MARKER})")


def holds_run(run_dir: Path) -> bool:
    """Whether a run has started in ``run_dir`` (its config, metrics or a checkpoint is there)."""
    return ((run_dir / CONFIG_FILE).exists() or (run_dir / METRICS_FILE).exists()
            or find_latest(run_dir / CHECKPOINTS) is not None)


def _was_demo(run_dir: Path) -> bool:
    from specforge.options import tomllib

    try:
        return bool(tomllib.loads((run_dir / CONFIG_FILE).read_text()).get("run", {}).get("demo"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def resolve_resume(config: RunConfig) -> tuple[RunConfig, Path | None]:
    """``--resume`` (``last``: this run; or a run or checkpoint folder) -> (config in that run's folder, checkpoint)."""
    wanted = config.training.resume
    if not wanted:
        return config, None
    where = config.run_dir if wanted in ("last", "auto") else Path(wanted)
    if not where.exists():
        raise ConfigError(f"--resume: {str(where)!r} does not exist; start the run without --resume")
    found = locate(where)
    if found.kind == "export":
        raise ConfigError(f"--resume {where}: an export folder cannot be resumed; pass its run folder")
    ckpt = found.require_checkpoint("--resume continues from a checkpoint")
    run_dir = found.run_dir
    assert run_dir is not None
    return config.replace("run", output_dir=str(run_dir.parent), name=run_dir.name), ckpt


def init_draft_checkpoint(path: str) -> Path | None:
    """``--init-draft PATH``: the checkpoint whose weights and extra state a new run starts from."""
    if not path:
        return None
    found = locate(path)
    if found.kind == "export":
        raise ConfigError(f"--init-draft {path}: pass a run or checkpoint folder (exports hold no extra state)")
    return found.require_checkpoint("--init-draft starts from a checkpoint")


def check_folder(config: RunConfig) -> None:
    """Refuse, before anything is written or loaded, a run into a folder that holds another run or
    cannot be created."""
    run_dir = config.run_dir
    _check_creatable(run_dir)
    if config.training.resume or not holds_run(run_dir) or config.run.overwrite:
        return
    if config.run.demo and _was_demo(run_dir):
        return  # the demo replaces its own previous run
    raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to replace it "
                      f"(the old run is moved to {run_dir.name}.replaced-<time>), or choose another --name")


def _check_creatable(run_dir: Path) -> None:
    """The nearest existing folder above ``run_dir`` must be a writable directory (``claim`` still
    probes with a real write: permissions are not the only way a write fails)."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = "Not a directory" if existing != run_dir else "it is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = "Permission denied"
    if problem:
        raise ConfigError(f"cannot write the run folder {run_dir}: {problem}; choose a writable --output-dir")


def claim(config: RunConfig) -> None:
    """Decide the run folder (``check_folder``), make it, and point ``runs/last`` at it.

    A replaced run is moved aside (``--overwrite``) or, for the demo's own previous run, deleted.
    """
    check_folder(config)
    run_dir = config.run_dir
    if not config.training.resume and holds_run(run_dir):
        if config.run.overwrite:
            aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(run_dir, aside)
            log.info("--overwrite: moved the previous run in %s to %s", run_dir, aside)
        else:
            log.info("replacing the previous demo run in %s", run_dir)
            shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}; choose a writable "
                          f"--output-dir") from None
    link_last(run_dir)


def write_config(config: RunConfig) -> None:
    """The resolved config as the run's record (``config.toml``), written atomically."""
    path = config.run_dir / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    tmp.write_text(config.to_toml())
    os.replace(tmp, path)


def link_last(run_dir: Path) -> None:
    """``runs/last`` -> the newest run (replaced atomically)."""
    last = run_dir.parent / "last"
    tmp = run_dir.parent / f".last-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, last)
