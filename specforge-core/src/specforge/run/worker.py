"""The lifecycle of a run in one trainer process: meet, check, assemble, claim, train, finish.

Every trainer process (the only one, each rank of a process group, each disaggregated trainer)
runs ``run_worker``: join the process group; global rank 0 refuses an occupied run folder
before anything loads; build the engine (or only the frozen target, for trainers that capture
nothing); assemble the run (data, strategy, request); check a resume can continue exactly; only
then does rank 0 claim the folder and write ``config.toml`` (so a refusal writes nothing); the
store opens; the topology trains; rank 0 exports and evaluates the draft it trained.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import Topology
from specforge.errors import SpecforgeError
from specforge.run import folder
from specforge.run.assemble import assemble, attach_store, build_engine, trainer_target_info
from specforge.run.demo import with_demo_assets

log = logging.getLogger(__name__)


def _on_rank0(dist: Any, action: Any) -> None:
    """Run ``action`` on global rank 0 only; every rank raises the error it met (nobody waits forever)."""
    from specforge.training import distributed

    problem = None
    if dist.is_main:
        try:
            action()
        except SpecforgeError as exc:
            problem = str(exc)
    problem = distributed.broadcast_object(dist, problem)
    if problem is not None:
        raise SpecforgeError(problem) if dist.is_main else SpecforgeError(f"rank 0 refused the run: {problem}")
    distributed.barrier(dist)


def _claimed_by_launcher(config: RunConfig) -> bool:
    return os.environ.get(folder.CLAIMED_ENV) == str(config.run_dir.resolve())


def _check_shared_folder(config: RunConfig, dist: Any) -> None:
    """Every rank must see the run folder rank 0 wrote (checkpoints and the offline disk store live there)."""
    import socket
    import uuid

    from specforge.training import distributed

    if not dist.distributed:
        return
    token = f".shared-{uuid.uuid4().hex}" if dist.is_main else None
    if dist.is_main:
        (config.run_dir / token).write_text("")
    token = distributed.broadcast_object(dist, token)
    seen = distributed.all_gather_object(dist, ((config.run_dir / token).exists(), socket.gethostname()))
    distributed.barrier(dist)
    if dist.is_main:
        (config.run_dir / token).unlink(missing_ok=True)
    blind = [f"rank {r} on {host}" for r, (ok, host) in enumerate(seen) if not ok]
    if blind:
        raise SpecforgeError(f"{', '.join(blind)} cannot see the run folder {config.run_dir} that rank 0 made: the "
                             f"run folder (checkpoints, the offline disk store) must be on a filesystem every node "
                             f"mounts at the same path; set --output-dir to such a path")


def _check_resume(run: Any) -> None:
    if run.resume_from is None:
        return
    from specforge.training.checkpoint import check_contract, read_state

    check_contract(read_state(run.resume_from)["contract"], run.contract(), run.resume_from)


def run_worker(config: RunConfig, topology: Topology, *, with_engine: bool = True) -> Any:
    """This process's part of the run; returns the outcome on global rank 0, None elsewhere."""
    from specforge.training import distributed

    dist = distributed.init(config.target.device)
    engine = run = None
    try:
        config, resume_from = folder.resolve_resume(config)
        config = with_demo_assets(config)
        init_draft = folder.init_draft_checkpoint(config.training.init_draft)
        claimed = _claimed_by_launcher(config)
        if not claimed:  # refuse an occupied folder before loading anything, write nothing yet
            _on_rank0(dist, lambda: folder.check_folder(config))
        engine = build_engine(config, dist.device) if with_engine else None
        info = engine.info() if engine is not None else trainer_target_info(config)
        run = assemble(config, dist, engine=engine, info=info, resume_from=resume_from, init_draft=init_draft)
        _check_resume(run)

        def claim_and_record() -> None:
            if not claimed:
                folder.claim(config)
            folder.write_config(config)

        _on_rank0(dist, claim_and_record)
        _check_shared_folder(config, dist)
        attach_store(run)
        run.observe("specforge_on_run_start")
        result = topology.train(run)
        run.observe("specforge_on_run_end", result=result)
        if not dist.is_main:
            return None
        log.info("trained %d steps, final loss %.4f, checkpoint %s", result.steps, result.final_loss,
                 result.checkpoint)
        from specforge.run.finish import finish

        outcome = finish(run, result)
        run.observe("specforge_on_run_finished", report=outcome.report, export_dir=outcome.export_dir)
        return outcome
    finally:
        if run is not None and run.store is not None:
            run.store.close()
        if engine is not None:
            engine.close()
        distributed.shutdown()
