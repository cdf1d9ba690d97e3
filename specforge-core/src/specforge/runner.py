"""`specforge run` after the plan: assemble the job, hand it to the topology, then report.

With ``--nproc-per-node N`` (N > 1) outside torchrun, this process only launches torchrun on
the resolved config; inside torchrun the same command is the worker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.errors import ConfigError, SpecforgeError

log = logging.getLogger(__name__)
STORE_ENV = "SPECFORGE_STORE_DESCRIPTOR"  # set by a launcher: reopen its store instead of building one


@dataclass(frozen=True)
class RunHandle:
    """What observer hooks receive as ``run``."""

    config: RunConfig
    run_dir: Path
    rank: int


def _resume_checkpoint(config: RunConfig) -> tuple[RunConfig, Path | None]:
    """Resolve --resume (a checkpoint folder, a run folder, or 'last' for this run) to a checkpoint."""
    from specforge.training.checkpoint import find_latest

    wanted = config.training.resume
    if not wanted:
        return config, None
    where = config.run_dir if wanted in ("last", "auto") else Path(wanted)
    if (where / "state.pt").is_file():
        ckpt, run_dir = where, where.parent.parent
    else:
        ckpt, run_dir = find_latest(where / "checkpoints"), where
    if ckpt is None:
        raise ConfigError(f"--resume: no complete checkpoint under {where / 'checkpoints'}; "
                          "start without --resume (or --init-draft PATH to warm-start)")
    config = config.replace("run", output_dir=str(run_dir.parent), name=run_dir.name)
    return config, ckpt


def _init_draft_checkpoint(path: str) -> Path | None:
    from specforge.training.checkpoint import find_latest

    if not path:
        return None
    p = Path(path)
    ckpt = p if (p / "state.pt").is_file() else find_latest(p / "checkpoints")
    if ckpt is None:
        raise ConfigError(f"--init-draft {path}: not a checkpoint folder nor a run folder with checkpoints")
    return ckpt


def _launch_torchrun(config: RunConfig) -> None:
    """Re-run this command under torchrun with the resolved config, then wait for it."""
    config.run_dir.mkdir(parents=True, exist_ok=True)
    launch = config.run_dir / "launch.toml"
    launch.write_text(config.to_toml())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={config.training.nproc_per_node}", "-m", "specforge", "run", "-c", str(launch)]
    log.info("launching %d processes: %s", config.training.nproc_per_node, " ".join(cmd))
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise SpecforgeError(f"torchrun exited with {result.returncode}; see the worker output above")


def _use_demo_assets(config: RunConfig) -> RunConfig:
    if config.target.model and config.data.path:
        return config
    from specforge.demo.assets import ensure_demo_assets

    if "OMP_NUM_THREADS" not in os.environ:  # tiny models: one thread avoids oversubscribing a small CPU
        import torch

        torch.set_num_threads(1)
    assets = ensure_demo_assets()
    if not config.target.model:
        log.info("no --target-model: using the embedded demo target %s", assets.target_dir)
        config = config.replace("target", model=str(assets.target_dir))
    if not config.data.path:
        log.info("no --data: using the embedded demo conversations, answered by the target itself, %s",
                 assets.regenerated_path)
        config = config.replace("data", path=str(assets.regenerated_path), eval_path=config.data.eval_path
                                or str(assets.heldout_path))
        if not config.eval.dtype:  # the tiny demo target is cheap in float64, where no argmax tie can flip
            config = config.replace("eval", dtype="float64")
    return config


def _link_last(run_dir: Path) -> None:
    last = run_dir.parent / "last"
    tmp = run_dir.parent / f".last-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, last)


def run(config: RunConfig) -> Any:
    from specforge.training.distributed import inside_torchrun

    topology = config.components["topology"].build()
    launch = getattr(topology, "launch", None)
    if callable(launch):  # the topology places its own processes (e.g. producers and trainers)
        return launch(config)
    if config.training.nproc_per_node > 1 and not inside_torchrun():
        _launch_torchrun(config)
        return None
    return run_worker(config, topology)


def prepare_run_dir(config: RunConfig, ctx: Any) -> tuple[RunConfig, Path | None]:
    """Resolve --resume and the demo assets; rank 0 creates the run folder and runs/last."""
    from specforge.training import distributed

    if ctx.world_size != config.training.nproc_per_node:
        config = config.replace("training", nproc_per_node=ctx.world_size)
    config, resume_from = _resume_checkpoint(config)
    config = _use_demo_assets(config)
    if ctx.is_main:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        (config.run_dir / "config.toml").write_text(config.to_toml())
        _link_last(config.run_dir)
    distributed.barrier(ctx)
    return config, resume_from


def assemble_job(config: RunConfig, ctx: Any, resume_from: Path | None, engine: Any = None,
                 info: Any = None) -> Any:
    """Data, strategy, store and observers around an engine (or, for trainers without one, its info)."""
    from specforge.data import load_samples
    from specforge.job import Job
    from specforge.registry import get_registry

    info = info if info is not None else engine.info()
    data = load_samples(config.data.path, info.tokenizer, max_length=config.data.max_length,
                        seed=config.run.seed, chat_template=config.data.chat_template or None,
                        skip_bad_lines=config.data.skip_bad_lines, max_samples=config.data.max_samples)
    strategy = config.strategy.build()
    try:
        request = strategy.feature_request(info)
        request.check_layers(info.num_layers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    store = _open_shared_store(config, ctx)
    registry = get_registry()
    handle = RunHandle(config, config.run_dir, ctx.rank)

    def observe(hook: str, **kwargs: Any) -> None:
        if ctx.is_main:
            registry.call_observers(hook, run=handle, **kwargs)

    return Job(config=config, ctx=ctx, run_dir=config.run_dir, engine=engine, info=info, samples=list(data.samples),
               stats=data.stats, strategy=strategy, request=request, store=store, observe=observe,
               resume_from=resume_from, init_draft=_init_draft_checkpoint(config.training.init_draft))


def _open_shared_store(config: RunConfig, ctx: Any) -> Any:
    """One store per run: a launcher's (from the environment), or rank 0's shared with the other
    ranks by descriptor when it is cross-process (a managed service then starts once)."""
    from specforge.stores.reopen import open_store
    from specforge.training.distributed import broadcast_object

    if os.environ.get(STORE_ENV):
        return open_store(json.loads(os.environ[STORE_ENV]))
    component = config.components["store"]
    shared = ctx.distributed and getattr(component.spec, "cross_process", False)
    if not shared or ctx.is_main:
        store = component.build(root=config.run_dir / "features", namespace="features")
    descriptor = broadcast_object(ctx, store.descriptor() if ctx.is_main else None) if shared else None
    return open_store(descriptor) if shared and not ctx.is_main else store


def build_engine(config: RunConfig, device: Any) -> Any:
    return config.components["target_engine"].build(model_path=config.target.model, dtype=config.target.dtype,
                                                    device=str(device))


def train_and_report(job: Any, topology: Any) -> Any:
    """Train through the topology, then (rank 0) export, evaluate and report."""
    job.observe("specforge_on_run_start")
    result = topology.run(job)
    job.observe("specforge_on_run_end", result=result)
    if not job.ctx.is_main:
        return None
    log.info("trained %d steps, final loss %.4f, checkpoint %s", result.steps, result.final_loss, result.checkpoint)
    from specforge.report import finish

    return finish(job, result)


def run_worker(config: RunConfig, topology: Any) -> Any:
    from specforge.training import distributed

    ctx = distributed.init(config.target.device)
    config, resume_from = prepare_run_dir(config, ctx)
    engine = build_engine(config, ctx.device)
    job = assemble_job(config, ctx, resume_from, engine=engine)
    try:
        return train_and_report(job, topology)
    finally:
        job.store.close()
        engine.close()
        distributed.shutdown()
