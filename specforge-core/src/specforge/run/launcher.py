"""The core's ``Launcher``: what a topology's ``launch`` uses to place the run's processes.

One place writes the resolved config for worker processes (a temporary ``launch.toml``, removed
when the launch ends) and builds every worker command line: ``python -m specforge run -c FILE
--set ...``. Several trainer processes, on one node or many, are started as one process group
by ``processes.start_group`` (its store listens only on ``training.master_addr``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import FeatureStore, Topology
from specforge.errors import SpecforgeError
from specforge.run import folder, preflight
from specforge.run.assemble import STORE_ENV, assemble, attach_store, build_engine, build_store
from specforge.run.context import Run
from specforge.run.demo import plan_target_info, with_demo_assets
from specforge.run.processes import GroupLayout, WorkerGroup, start_group, start_single

log = logging.getLogger(__name__)


class CoreLauncher:
    """Implements ``specforge.contracts.Launcher`` for one ``specforge run`` invocation."""

    def __init__(self, config: RunConfig, topology: Topology) -> None:
        config, _ = folder.resolve_resume(config)
        self.config = with_demo_assets(config)
        self.topology = topology
        strategy = self.config.strategy.build()
        info = plan_target_info(self.config)
        strategy.feature_request(info).check_layers(info.num_layers)
        preflight.check(self.config, info, strategy)  # every file-only check, before anything loads
        self._tmp: Path | None = None
        self._claimed = False

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    # ------------------------------------------------------------------ the folder

    def claim_folder(self) -> None:
        """Decide the run folder here, once, for every process this launcher starts."""
        if not self._claimed:
            folder.claim(self.config)
            self._claimed = True

    # ------------------------------------------------------------------ worker processes

    def launch_file(self) -> Path:
        """The resolved config the workers read (``-c``), written once per launch."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="specforge-launch-"))
            (self._tmp / "launch.toml").write_text(self.config.to_toml())
        return self._tmp / "launch.toml"

    def worker_command(self, sets: Sequence[str] = ()) -> list[str]:
        """``specforge run`` on this config with extra ``--set`` items."""
        cmd = [sys.executable, "-m", "specforge", "run", "-c", str(self.launch_file())]
        for item in sets:
            cmd += ["--set", item]
        return cmd

    def layout(self, nproc: int) -> GroupLayout:
        t = self.config.training
        return GroupLayout(nproc_per_node=nproc, nnodes=t.nnodes, node_rank=t.node_rank,
                           master_addr=t.master_addr, master_port=t.master_port, join_timeout_s=t.join_timeout_s)

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        out = {**os.environ, **(env or {})}
        if self._claimed:
            out[folder.CLAIMED_ENV] = str(self.run_dir.resolve())
        return out

    def spawn(self, sets: Sequence[str] = (), *, nproc: int = 1,
              env: Mapping[str, str] | None = None) -> WorkerGroup:
        """``nproc`` processes of ``specforge run`` as one process group (one plain process for nproc=1)."""
        cmd = self.worker_command(sets)
        log.debug("starting %s", " ".join(cmd))
        if nproc > 1 or self.config.training.nnodes > 1:
            return start_group(cmd, self.layout(nproc), self._env(env))
        return start_single(cmd, self._env(env))

    def run_workers(self) -> Any:
        """``nproc_per_node`` processes per node as one process group, or this process when alone."""
        from specforge.training.distributed import inside_torchrun

        t = self.config.training
        if (t.nproc_per_node <= 1 and t.nnodes <= 1) or inside_torchrun():
            return self.run_here()
        if t.nnodes == 1:
            folder.check_folder(self.config)  # refuse at once; rank 0 claims once its data loaded
        group = self.spawn(nproc=t.nproc_per_node)
        try:
            code = group.wait()
        except KeyboardInterrupt:
            group.stop()
            raise
        finally:
            group.close()
        if code != 0:
            raise SpecforgeError(f"a trainer process exited with {code}; see the worker output above")
        return None

    def run_here(self, *, engine: bool = True) -> Any:
        from specforge.run.worker import run_worker

        return run_worker(self.config, self.topology, with_engine=engine)

    # ------------------------------------------------------------------ non-training processes

    def assemble(self, *, engine: bool = True) -> Run:
        """The parts for a process that captures but does not train (rank -1: no observers)."""
        from specforge.devices import resolve_device
        from specforge.run.assemble import trainer_target_info
        from specforge.training.distributed import DistContext

        dist = DistContext(rank=-1, world_size=self.config.training.nproc_per_node, local_rank=0,
                           device=resolve_device(self.config.target.device))
        built = build_engine(self.config, dist.device) if engine else None
        info = built.info() if built is not None else trainer_target_info(self.config)
        return attach_store(assemble(self.config, dist, engine=built, info=info))

    def build_store(self) -> FeatureStore:
        return build_store(self.config)

    def store_env(self, store: FeatureStore) -> dict[str, str]:
        return {STORE_ENV: json.dumps(store.descriptor())}

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
