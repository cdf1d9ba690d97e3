"""One W&B run per SpecForge run: config at the start, each metrics line as history, a summary.

W&B reads its own environment (``WANDB_PROJECT``, ``WANDB_ENTITY``, ``WANDB_MODE``,
``WANDB_DIR``, ``WANDB_API_KEY``, ...); this module adds only what SpecForge knows: the run's
name, its resolved config, and where files go (the run folder unless ``WANDB_DIR`` says
otherwise). The W&B run id is kept in ``runs/<name>/wandb-run.json`` so ``--resume`` continues
the same W&B run instead of starting a second one. wandb is imported here, not at registration.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from specforge.api import RunContext, TrainResult, final_scalars

ID_FILE = "wandb-run.json"


@dataclass
class WandbRun:
    """A started W&B run; it logs numbers only (W&B charts nothing else from a metrics line)."""

    handle: Any  # wandb.sdk.wandb_run.Run

    @classmethod
    def start(cls, run: RunContext) -> WandbRun:
        import wandb

        id_file = run.run_dir / ID_FILE
        resumed = run.resume_from is not None and id_file.is_file()
        run_id = json.loads(id_file.read_text())["id"] if resumed else None  # None: W&B picks a new one
        handle = wandb.init(
            project=os.environ.get("WANDB_PROJECT"),
            name=run.config.run_name,
            id=run_id,
            resume="allow" if resumed else None,
            dir=os.environ.get("WANDB_DIR") or str(run.run_dir),
            config=run.config.sections(),
            job_type="train",
        )
        id_file.write_text(json.dumps({"id": handle.id, "project": handle.project}) + "\n")
        return cls(handle)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """One metrics.jsonl line at its optimizer step (the line's own ``step`` is W&B's step)."""
        numbers = {k: v for k, v in metrics.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.handle.log(numbers, step=step)

    def trained(self, result: TrainResult) -> None:
        self.handle.summary["steps"] = result.steps
        self.handle.summary["final_loss"] = result.final_loss

    def finish(self, report: dict | None) -> None:
        """The final evaluation's τ into the summary, then the W&B run ends (a run that fails before
        this is ended by wandb's own exit hook, marked as failed)."""
        self.handle.summary.update(final_scalars(report))
        self.handle.finish()

