"""``disaggregated``: producer processes capture into a shared store; trainer processes consume.

One machine: ``specforge run --topology disaggregated`` hosts the control plane (a TCPStore),
starts ``num_producers`` producer processes and the trainers (torchrun when
``--nproc-per-node`` > 1), and watches them. Several machines: start
``--set topology.role=coordinator`` once, then ``--set topology.role=producer`` /
``--set topology.role=trainer`` anywhere with ``topology.coordinator`` set.

The plan is the trainers' deterministic data plan, flattened in the order they consume it;
plan item ``(epoch, index)`` is sample id ``e{epoch}/{index}``. Producer p captures positions
p, p+P, ... and never runs more than ``max_inflight`` positions ahead of what the trainers have
acknowledged. Trainers acknowledge after the optimizer step that used a sample, then delete it.
A (re)started producer begins at the acknowledged position and captures only what is missing; a
resumed trainer rewinds the acknowledged position to its checkpoint. Tensors never go through
the control plane. Evaluation runs on trainer rank 0 after training, which builds its own target
engine for it (trainers hold only the frozen target while training).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from specforge.contracts import Launcher, RunContext, TrainResult
from specforge.errors import ConfigError, SpecforgeError
from specforge.faults import ENV as KILL_ENV
from specforge.faults import kill_point
from specforge.topologies.control_plane import ControlPlane, sample_id
from specforge.topologies.options import DisaggregatedOptions
from specforge.topologies.placement import Placement, count_accelerators, place, visible_devices

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
        self._control: ControlPlane | None = None

    # ------------------------------------------------------------------ entry

    def launch(self, launcher: Launcher) -> Any:
        role = self.options.role
        if role == "producer":
            return self._producer(launcher)
        if role == "trainer":
            host, port = _coordinator(self.options)
            self._control = ControlPlane(host, port, timeout_s=self.options.wait_timeout_s)
            try:
                return launcher.run_here(engine=False)
            finally:
                with contextlib.suppress(Exception):  # rank 0 tells the producers; others may fail to reach it
                    if _is_global_rank0():
                        self._control.finish()
        if role == "coordinator":
            return self._coordinator_only()
        return self._one_machine(launcher)

    def placement(self, nproc: int) -> Placement:
        o = self.options
        if o.trainer_devices and len(o.trainer_devices) != nproc:
            raise ConfigError(f"topology.trainer_devices names {len(o.trainer_devices)} device(s) for {nproc} "
                              f"trainer process(es) (--nproc-per-node); give one per trainer")
        return place(o.num_producers, nproc, count_accelerators(), producer_devices=o.producer_devices,
                     trainer_devices=o.trainer_devices)

    def plan_notes(self, config: Any) -> list[str]:
        if self.options.role != "auto":
            return [f"role {self.options.role} (coordinator {self.options.coordinator or 'from the environment'})"]
        return self.placement(config.training.nproc_per_node).lines()

    def train(self, run: RunContext) -> TrainResult:
        if self._control is None:
            raise SpecforgeError("a disaggregated trainer needs the coordinator; start it with "
                                 "--set topology.role=trainer and topology.coordinator=HOST:PORT")
        return self._train(run, self._control)

    # ------------------------------------------------------------------ one machine: launcher

    def _one_machine(self, launcher: Launcher) -> Any:
        launcher.claim_folder()
        control = ControlPlane("127.0.0.1", 0, is_host=True, timeout_s=self.options.wait_timeout_s)
        # One store for every process: built here (a managed service such as a Mooncake master lives as
        # long as this launcher), reopened by the children from its descriptor.
        store = launcher.build_store()
        env = {COORDINATOR_ENV: control.address, **launcher.store_env(store)}
        nproc = launcher.config.training.nproc_per_node
        devices = self.placement(nproc)
        for line in devices.lines():
            log.info("placement: %s", line)
        producers = {i: self._start_producer(launcher, i, env, devices.producers[i])
                     for i in range(self.options.num_producers)}
        restarts = dict.fromkeys(producers, 0)
        trainer_device = "cuda" if devices.trainers[0].startswith("cuda") else "cpu"
        trainer = launcher.spawn(['topology.role="trainer"', f'target.device="{trainer_device}"'], nproc=nproc,
                                 env={**env, **visible_devices(devices.trainers)})
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
                        producers[i] = self._start_producer(launcher, i, env, devices.producers[i],
                                                            restarted=True)
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

    def _start_producer(self, launcher: Launcher, index: int, env: dict, device: str,
                        restarted: bool = False) -> Any:
        env = {**env, **visible_devices((device,))}
        if restarted:  # a kill point fires once: the restarted producer runs clean
            env[KILL_ENV] = ""
        local = "cuda:0" if device.startswith("cuda") else "cpu"  # its one visible GPU, or the CPU
        return launcher.spawn(['topology.role="producer"', f"topology.producer_index={index}",
                               f'target.device="{local}"'], env=env)

    def _coordinator_only(self) -> None:
        host, _, port = (self.options.coordinator or "127.0.0.1:29600").rpartition(":")
        control = ControlPlane(host, int(port), is_host=True, timeout_s=self.options.wait_timeout_s)
        import click

        click.echo(f"coordinator listening on {control.address}; set topology.coordinator to it")
        while not control.trainers_done():
            time.sleep(1.0)

    # ------------------------------------------------------------------ producer

    def _producer(self, launcher: Launcher) -> None:
        host, port = _coordinator(self.options)
        control = ControlPlane(host, port, timeout_s=self.options.wait_timeout_s)
        me, count = self.options.producer_index, self.options.num_producers
        try:
            run = launcher.assemble(engine=True)
            engine = run.engine
            assert engine is not None
            order = list(plan_order(run.plan()))
            metrics = (run.run_dir / f"producer-{me}.jsonl").open("a")
            while control.incarnation() < 1:  # trainers set where the plan stands when they start
                control.raise_producer_error()
                time.sleep(0.05)
            incarnation, pos, produced, started = control.incarnation(), control.acked(), 0, time.perf_counter()
            batch_size = run.config.training.capture_batch_size
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
                window = []  # this producer's next positions inside the in-flight window, one engine batch
                while (len(window) < batch_size and pos < len(order)
                       and pos - acked < self.options.max_inflight):
                    window.append(pos)
                    pos += count
                todo = []
                for position in window:
                    epoch, index = order[position]
                    sid = sample_id(epoch, index)
                    old = control.published(sid)
                    if old is None or not run.store.exists(old.key):
                        todo.append((position, index, sid, old.key.generation + 1 if old else 0))
                if not todo:
                    continue
                features = engine.capture([run.samples[index] for _, index, _, _ in todo], run.request)
                for (position, index, sid, generation), feats in zip(todo, features):
                    record = run.store.put(run.feature_key(run.samples[index], generation, sid), feats)
                    control.publish(sid, record)
                    produced += 1
                    total = control.count_produced(me)
                    elapsed = time.perf_counter() - started
                    metrics.write(json.dumps({"position": position, "acked": acked,
                                              "inflight": position - acked + 1, "batch": len(todo),
                                              "device": str(run.dist.device),
                                              "samples_per_s": produced / elapsed if elapsed else 0.0}) + "\n")
                    metrics.flush()
                    kill_point(f"produce:{total}")
            metrics.close()
            engine.close()
        except Exception as exc:
            control.fail(f"producer {me}: {type(exc).__name__}: {exc}")
            raise

    # ------------------------------------------------------------------ trainers

    def _train(self, run: RunContext, control: ControlPlane) -> TrainResult:
        plan, dist = run.plan(), run.dist
        records: dict[int, list] = {}
        waited = [0.0]

        def on_start(step: int) -> None:
            if dist.is_main:
                control.rewind(step * plan.samples_per_step)

        def fetch(indices, epoch):
            out = []
            for index in indices:
                record, wait = control.wait_record(sample_id(epoch, index), self.options.poll_s)
                waited[0] += wait
                records.setdefault(epoch, []).append(record)
                out.append(run.store.get(record))
            return out

        audit = (run.run_dir / f"trained-rank{dist.rank}.jsonl").open("a")
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
                run.store.delete(record)
            control.ack(len(indices))
            audit.write(json.dumps({"step": step, "samples": [sample_id(epoch, i) for i in indices],
                                    "wait_s": round(waited[0], 4)}) + "\n")
            audit.flush()
            clock["wait"] += waited[0]
            clock["samples"] += len(indices) * dist.world_size
            waited[0] = 0.0

        try:
            return run.train(fetch, on_step=on_step, on_start=on_start, extra_metrics=extra_metrics)
        finally:
            audit.close()


def _is_global_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _next_mine(pos: int, me: int, count: int) -> int:
    """The first position >= pos that producer ``me`` of ``count`` owns."""
    return pos + (me - pos) % count


def _stop(proc: Any, grace_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.stop(grace_s)
