"""Pieces every built-in topology shares: the data plan and the trainer set-up."""

from __future__ import annotations

from typing import Any

from specforge.job import Job
from specforge.training.plan import DataPlan
from specforge.training.trainer import Fetch, TrainResult, TrainSetup, train


def data_plan(job: Job) -> DataPlan:
    t = job.config.training
    return DataPlan(num_samples=len(job.samples), batch_size=t.batch_size, accumulation=t.accumulation,
                    world_size=job.ctx.world_size, epochs=t.epochs, seed=job.config.run.seed,
                    max_steps=t.max_steps)


def run_training(job: Job, plan: DataPlan, fetch: Fetch, **extra: Any) -> TrainResult:
    setup = TrainSetup(ctx=job.ctx, strategy=job.strategy, info=job.info, stats=job.stats, plan=plan,
                       fetch=fetch, run_dir=job.run_dir, training=job.config.training,
                       config_toml=job.config.to_toml(), contract=job.contract(), observe=job.observe,
                       resume_from=job.resume_from, init_draft=job.init_draft, seed=job.config.run.seed,
                       **extra)
    return train(setup)
