"""``Run``: one run in one process, carried from assembly to finish (the ``RunContext`` a topology gets)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import (
    DataStats,
    FeatureKey,
    FeatureRequest,
    FeatureStore,
    Sample,
    SampleFeatures,
    Strategy,
    TargetEngine,
    TargetInfo,
    TrainResult,
)


@dataclass
class Run:
    """The assembled parts of a run in this process. Observer hooks receive it as ``run``."""

    config: RunConfig
    dist: Any  # specforge.training.distributed.DistContext
    engine: TargetEngine | None  # None in processes that only train (disaggregated trainers)
    info: TargetInfo
    samples: Sequence[Sample]  # the training samples, read from the tokenized dataset on access
    stats: DataStats  # of the training samples (the held-out split excluded)
    strategy: Strategy
    request: FeatureRequest
    store: FeatureStore | None = None  # opened once the run folder is claimed
    identity: Any = None  # specforge.capture.FeatureIdentity: what decides the features' bytes
    resume_from: Path | None = None
    init_draft: Path | None = None
    observe_hook: Callable[..., None] = field(default=lambda hook, **kw: None, repr=False)
    corpus: Any = None  # specforge.data.corpus.Corpus: the dataset, the held-out split, eval prompts

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def rank(self) -> int:
        return self.dist.rank

    def observe(self, hook: str, **kwargs: Any) -> None:
        """Call an observer hook (global rank 0 only; a failing observer stops the run, named)."""
        if self.dist.is_main:
            self.observe_hook(hook, run=self, **kwargs)

    def contract(self) -> dict:
        """What a resume must not change (it could not continue exactly otherwise)."""
        t = self.config.training
        return {"world_size": self.dist.world_size, "batch_size": t.batch_size, "accumulation": t.accumulation,
                "epochs": t.epochs, "max_steps": t.max_steps, "strategy": self.config.run.strategy,
                "dataset": f"{self.stats.num_samples} samples, corpus {self.stats.corpus_hash}"}

    def feature_key(self, sample: Sample, generation: int = 0, sample_id: str | None = None) -> FeatureKey:
        """The store key for ``sample``'s features, carrying their fingerprint."""
        from specforge.capture import NAMESPACE

        return FeatureKey(NAMESPACE, sample_id or sample.sample_id, generation, self.identity.fingerprint(sample))

    def capture(self, samples: Sequence[Sample], *, progress: bool = True) -> Any:
        """Capture ``samples`` into the run's store, reusing stored features only where identical."""
        from specforge.capture import capture_into_store

        if self.engine is None:
            raise RuntimeError("this process has no target engine to capture with")
        return capture_into_store(self.engine, samples, self.request, self.store, identity=self.identity,
                                  batch_size=self.config.training.capture_batch_size, progress=progress,
                                  read_only=bool(getattr(self.store, "read_only", False)))

    def plan(self) -> Any:
        from specforge.training.plan import DataPlan

        t = self.config.training
        return DataPlan(num_samples=len(self.samples), batch_size=t.batch_size, accumulation=t.accumulation,
                        world_size=self.dist.world_size, epochs=t.epochs, seed=self.config.run.seed,
                        max_steps=t.max_steps)

    def train(self, fetch: Callable[[Sequence[int], int], list[SampleFeatures]], *,
              on_step: Callable[[int, int, Sequence[int]], None] | None = None,
              on_start: Callable[[int], None] | None = None,
              extra_metrics: Callable[[], dict[str, float]] | None = None) -> TrainResult:
        from specforge.training.trainer import train

        evaluator = None
        if self.config.training.eval_every:
            from specforge.run.training_eval import TrainingEvaluator

            evaluator = TrainingEvaluator(self)
        try:
            return train(self, fetch, on_step=on_step, on_start=on_start, extra_metrics=extra_metrics,
                         evaluator=evaluator)
        finally:
            if evaluator is not None:
                evaluator.close()
