"""A run's assembled parts, handed to a topology: it decides which process does what."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import DataStats, FeatureRequest, FeatureStore, Sample, Strategy, TargetEngine, TargetInfo


@dataclass
class Job:
    config: RunConfig
    ctx: Any  # specforge.training.distributed.DistContext
    run_dir: Path
    engine: TargetEngine | None  # None in processes that only train (disaggregated trainers)
    info: TargetInfo
    samples: list[Sample]
    stats: DataStats
    strategy: Strategy
    request: FeatureRequest
    store: FeatureStore
    observe: Callable[..., None] = field(default=lambda hook, **kw: None)
    resume_from: Path | None = None
    init_draft: Path | None = None

    def contract(self) -> dict:
        """What a resume must not change (it could not continue exactly otherwise)."""
        t = self.config.training
        return {"world_size": self.ctx.world_size, "batch_size": t.batch_size, "accumulation": t.accumulation,
                "epochs": t.epochs, "max_steps": t.max_steps, "strategy": self.config.run.strategy,
                "dataset": f"{self.stats.num_samples} samples, corpus {self.stats.corpus_hash}"}
