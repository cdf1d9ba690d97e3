"""``disaggregated``: producer processes capture into a shared store; trainer processes consume.

One machine: ``specforge run --topology disaggregated`` hosts the control plane (a TCPStore),
starts ``num_producers`` producer processes and the trainers (torchrun when
``--nproc-per-node`` > 1), and watches them. Several machines: start ``--role coordinator``
once, then ``--role producer`` / ``--role trainer`` anywhere with ``topology.coordinator`` set.

The plan is the trainers' deterministic data plan, flattened in the order they consume it;
plan item ``(epoch, index)`` is sample id ``e{epoch}/{index}``. Producer p captures positions
p, p+P, ... and never runs more than ``max_inflight`` positions ahead of what the trainers have
acknowledged. Trainers acknowledge after the optimizer step that used a sample, then delete it.
A (re)started producer begins at the acknowledged position and captures only what is missing; a
resumed trainer rewinds the acknowledged position to its checkpoint. Tensors never go through
the control plane.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from specforge.config import RunConfig
from specforge.errors import ConfigError, SpecforgeError
from specforge.faults import ENV as KILL_ENV
from specforge.faults import kill_point
from specforge.topologies.control_plane import ControlPlane, sample_id
from specforge.topologies.options import DisaggregatedOptions

log = logging.getLogger(__name__)
COORDINATOR_ENV = "SPECFORGE_COORDINATOR"


def plan_order(plan: Any) -> Iterator[tuple[int, int]]:
    """(epoch, sample index) in the order the trainers consume them, all ranks interleaved."""
    per_epoch = plan.steps_per_epoch
    batches = {}
    for step in range(plan.total_steps):
        epoch, j = divmod(step, per_epoch)
        if epoch not in batches:
            batches = {epoch: [plan.epoch_batches(epoch, r) for r in range(plan.world_size)]}
        for m in range(plan.accumulation):
            for rank in range(plan.world_size):
                for index in batches[epoch][rank][j * plan.accumulation + m]:
                    yield epoch, index


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _coordinator(options: DisaggregatedOptions) -> tuple[str, int]:
    address = os.environ.get(COORDINATOR_ENV) or options.coordinator
    if not address:
        raise ConfigError("this role needs the coordinator: set topology.coordinator=\"HOST:PORT\" "
                          "(printed by `specforge run --topology disaggregated --role coordinator`)")
    host, _, port = address.rpartition(":")
    return host, int(port)


class DisaggregatedTopology:
    def __init__(self, options: DisaggregatedOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ entry

    def launch(self, config: RunConfig) -> Any:
        role = self.options.role
        if role == "producer":
            return self._producer(config)
        if role == "trainer":
            return self._trainer(config)
        if role == "coordinator":
            return self._coordinator_only()
        return self._one_machine(config)

    def run(self, job: Any) -> Any:  # the runner calls launch(); run() is the trainers' loop
        return self._train(job)

    # ------------------------------------------------------------------ one machine: launcher

    def _one_machine(self, config: RunConfig) -> Any:
        control = ControlPlane("127.0.0.1", 0, is_host=True, timeout_s=self.options.wait_timeout_s)
        config.run_dir.mkdir(parents=True, exist_ok=True)
        launch_file = config.run_dir / "launch.toml"
        launch_file.write_text(config.to_toml())
        from specforge.runner import STORE_ENV

        # One store for every process: built here (a managed service such as a Mooncake master lives as
        # long as this launcher), reopened by the children from its descriptor.
        store = config.components["store"].build(root=config.run_dir / "features", namespace="features")
        env = {**os.environ, COORDINATOR_ENV: control.address, STORE_ENV: json.dumps(store.descriptor())}
        base = [sys.executable, "-m", "specforge", "run", "-c", str(launch_file)]
        trainer_cmd = [*base, "--set", 'topology.role="trainer"']
        if config.training.nproc_per_node > 1:
            trainer_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={config.training.nproc_per_node}", "-m", "specforge", "run", "-c",
                           str(launch_file), "--set", 'topology.role="trainer"']
        producers = {i: self._start_producer(base, i, env) for i in range(self.options.num_producers)}
        restarts = dict.fromkeys(producers, 0)
        trainer = subprocess.Popen(trainer_cmd, env=env, start_new_session=True)
        log.info("coordinator %s: %d producer(s), trainers %s", control.address, len(producers), trainer.pid)
        try:
            while trainer.poll() is None:
                for i, proc in list(producers.items()):
                    code = proc.poll()
                    if code is None or code == 0:
                        continue
                    if restarts[i] < self.options.producer_restarts:
                        restarts[i] += 1
                        log.warning("producer %d exited with %s; restart %d of %d", i, code, restarts[i],
                                    self.options.producer_restarts)
                        clean = {k: v for k, v in env.items() if k != KILL_ENV}  # a kill point fires once
                        producers[i] = self._start_producer(base, i, clean)
                    else:
                        control.fail(f"producer {i} exited with code {code}")
                        producers.pop(i)
                time.sleep(0.1)
        except KeyboardInterrupt:
            _stop(trainer)
            raise
        finally:
            for proc in producers.values():
                _stop(proc)
            store.close()
        if trainer.returncode != 0:
            raise SpecforgeError(f"the trainers exited with code {trainer.returncode}; see their output above")
        return None

    def _start_producer(self, base: list[str], index: int, env: dict) -> subprocess.Popen:
        cmd = [*base, "--set", 'topology.role="producer"', "--set", f"topology.producer_index={index}"]
        return subprocess.Popen(cmd, env=env, start_new_session=True)

    def _coordinator_only(self) -> None:
        host, _, port = (self.options.coordinator or "0.0.0.0:29600").rpartition(":")
        control = ControlPlane(host, int(port), is_host=True, timeout_s=self.options.wait_timeout_s)
        import click

        click.echo(f"coordinator listening on {control.address}; set topology.coordinator to it")
        while not control.trainers_done():
            time.sleep(1.0)

    # ------------------------------------------------------------------ producer

    def _producer(self, config: RunConfig) -> None:
        from specforge.capture import NAMESPACE
        from specforge.contracts import FeatureKey
        from specforge.runner import _use_demo_assets, assemble_job, build_engine
        from specforge.topologies.common import data_plan
        from specforge.training.distributed import DistContext, resolve_device

        host, port = _coordinator(self.options)
        control = ControlPlane(host, port, timeout_s=self.options.wait_timeout_s)
        me, count = self.options.producer_index, self.options.num_producers
        try:
            config = _use_demo_assets(config)
            trainers = config.training.nproc_per_node
            # rank -1: a producer is no trainer rank (observers run on trainer rank 0 only)
            ctx = DistContext(rank=-1, world_size=trainers, local_rank=0, device=resolve_device(config.target.device))
            engine = build_engine(config, ctx.device)
            job = assemble_job(config, ctx, None, engine=engine)
            order = list(plan_order(data_plan(job)))
            metrics = (config.run_dir / f"producer-{me}.jsonl").open("a")
            while control.incarnation() < 1:  # trainers set where the plan stands when they start
                control.raise_producer_error()
                time.sleep(0.05)
            incarnation, pos, produced, started = control.incarnation(), control.acked(), 0, time.perf_counter()
            pos = _next_mine(pos, me, count)
            while pos < len(order):
                if control.trainers_done():
                    break
                acked = control.acked()
                if control.incarnation() != incarnation:  # trainers restarted: start over from their position
                    incarnation, pos = control.incarnation(), _next_mine(acked, me, count)
                    continue
                if pos - acked >= self.options.max_inflight:  # backpressure
                    time.sleep(self.options.poll_s)
                    continue
                epoch, index = order[pos]
                sid = sample_id(epoch, index)
                old = control.published(sid)
                if old is None or not job.store.exists(old.key):
                    generation = old.key.generation + 1 if old else 0
                    features = engine.capture([job.samples[index]], job.request)[0]
                    record = job.store.put(FeatureKey(NAMESPACE, sid, generation), features)
                    control.publish(sid, record)
                    produced += 1
                    total = control.count_produced(me)
                    elapsed = time.perf_counter() - started
                    metrics.write(json.dumps({"position": pos, "acked": acked, "inflight": pos - acked + 1,
                                              "samples_per_s": produced / elapsed if elapsed else 0.0}) + "\n")
                    metrics.flush()
                    kill_point(f"produce:{total}")
                pos += count
            metrics.close()
            engine.close()
        except Exception as exc:
            control.fail(f"producer {me}: {type(exc).__name__}: {exc}")
            raise

    # ------------------------------------------------------------------ trainers

    def _trainer(self, config: RunConfig) -> Any:
        from specforge.data import load_tokenizer
        from specforge.runner import assemble_job, prepare_run_dir, train_and_report
        from specforge.trained import frozen_target_info
        from specforge.training import distributed

        host, port = _coordinator(self.options)
        ctx = distributed.init(config.target.device)
        config, resume_from = prepare_run_dir(config, ctx)
        info = dataclasses.replace(frozen_target_info(config.target.model, config.target.dtype),
                                   tokenizer=load_tokenizer(config.target.model))
        job = assemble_job(config, ctx, resume_from, info=info)
        self._control = ControlPlane(host, port, timeout_s=self.options.wait_timeout_s)
        try:
            return train_and_report(job, self)
        finally:
            if ctx.is_main:
                self._control.finish()
            job.store.close()
            distributed.shutdown()

    def _train(self, job: Any) -> Any:
        from specforge.topologies.common import data_plan, run_training

        control, plan, ctx = self._control, data_plan(job), job.ctx
        records: dict[int, list] = {}
        waited = [0.0]

        def on_start(step: int) -> None:
            if ctx.is_main:
                control.rewind(step * plan.samples_per_step)

        def fetch(indices, epoch):
            out = []
            for index in indices:
                record, wait = control.wait_record(sample_id(epoch, index), self.options.poll_s)
                waited[0] += wait
                records.setdefault(epoch, []).append(record)
                out.append(job.store.get(record))
            return out

        audit = (job.run_dir / f"trained-rank{ctx.rank}.jsonl").open("a")
        clock = {"last": time.perf_counter(), "wait": 0.0, "samples": 0}

        def extra_metrics() -> dict[str, float]:
            now = time.perf_counter()
            elapsed, clock["last"] = now - clock["last"], now
            out = {"data_wait_s": clock["wait"],
                   "trainer_samples_per_s": clock["samples"] / elapsed if elapsed > 0 else 0.0}
            clock["wait"], clock["samples"] = 0.0, 0
            return out

        def on_step(step: int, epoch: int, indices) -> None:
            done = records.pop(epoch, [])
            for record in done:
                job.store.delete(record)
            control.ack(len(indices))
            audit.write(json.dumps({"step": step, "samples": [sample_id(epoch, i) for i in indices],
                                    "wait_s": round(waited[0], 4)}) + "\n")
            audit.flush()
            clock["wait"] += waited[0]
            clock["samples"] += len(indices) * ctx.world_size
            waited[0] = 0.0

        try:
            return run_training(job, plan, fetch, on_step=on_step, on_start=on_start, extra_metrics=extra_metrics)
        finally:
            audit.close()


def _next_mine(pos: int, me: int, count: int) -> int:
    """The first position >= pos that producer ``me`` of ``count`` owns."""
    return pos + (me - pos) % count


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


