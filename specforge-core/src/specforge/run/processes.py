"""Worker processes on this node, wired into one torch.distributed process group (our torchrun).

The launcher of node 0 hosts the group's TCPStore on a socket it binds itself, to
``master_addr`` exactly (127.0.0.1 on one machine), because torch's own TCPStore server listens
on every interface whatever host it is given. Workers join it as clients
(``TORCHELASTIC_USE_AGENT_STORE``) and gloo's pair sockets stay on loopback
(``GLOO_SOCKET_IFNAME=lo``) unless the group spans machines. Every node's launcher checks in
with the store; node 0 waits for the others and fails naming the nodes that never joined. When
a worker of any node fails, every launcher stops its own workers instead of letting them wait
in a collective.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from specforge.errors import SpecforgeError
from specforge.net import host_store, is_loopback

log = logging.getLogger(__name__)

FAILED_KEY = "specforge/failed"
POLL_S = 0.2


@dataclass(frozen=True)
class GroupLayout:
    """Where this node's workers sit in the whole process group."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 0  # 0: any free port (one node only)
    join_timeout_s: float = 300.0

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def loopback(self) -> bool:
        return is_loopback(self.master_addr)


class Rendezvous:
    """The group's TCPStore: hosted here on node 0, joined as a client elsewhere."""

    def __init__(self, layout: GroupLayout) -> None:
        from torch.distributed import TCPStore

        self.layout = layout
        self._socket = None
        timeout = datetime.timedelta(seconds=layout.join_timeout_s)
        if layout.node_rank == 0:
            self.store, self._socket = host_store(layout.master_addr, layout.master_port, "the process group",
                                                  layout.join_timeout_s)
            self.port = self._socket.getsockname()[1]
        else:
            self.port = layout.master_port
            try:
                self.store = TCPStore(layout.master_addr, self.port, is_master=False, timeout=timeout)
            except (RuntimeError, TimeoutError) as exc:
                raise SpecforgeError(
                    f"node {layout.node_rank} could not reach node 0 at {layout.master_addr}:{self.port} within "
                    f"{layout.join_timeout_s:.0f} s ({exc}); start node 0 with the same --master-addr and "
                    f"--master-port") from None

    def join(self) -> None:
        """Check this node in; node 0 waits for all nodes (naming those that never join)."""
        layout = self.layout
        self.store.set(f"specforge/node/{layout.node_rank}", socket.gethostname())
        if layout.nnodes == 1:
            return
        deadline = time.monotonic() + layout.join_timeout_s
        while True:
            missing = [r for r in range(layout.nnodes) if not self.store.check([f"specforge/node/{r}"])]
            if not missing:
                return
            if time.monotonic() > deadline:
                names = ", ".join(map(str, missing))
                raise SpecforgeError(f"node(s) {names} of {layout.nnodes} did not join the process group at "
                                     f"{layout.master_addr}:{self.port} within {layout.join_timeout_s:.0f} s "
                                     f"(training.join_timeout_s); start them with --node-rank {missing[0]} and "
                                     f"the same --master-addr/--master-port")
            time.sleep(POLL_S)

    def fail(self, message: str) -> None:
        with contextlib.suppress(Exception):
            if not self.store.check([FAILED_KEY]):
                self.store.set(FAILED_KEY, message)

    def failed(self) -> str | None:
        with contextlib.suppress(Exception):
            if self.store.check([FAILED_KEY]):
                return self.store.get(FAILED_KEY).decode()
        return None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def worker_env(layout: GroupLayout, port: int, local_rank: int, base: Mapping[str, str]) -> dict[str, str]:
    """What torchrun would tell worker ``local_rank`` of this node, joining our store as a client."""
    env = dict(base)
    env.update({
        "RANK": str(layout.node_rank * layout.nproc_per_node + local_rank),
        "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(layout.world_size),
        "LOCAL_WORLD_SIZE": str(layout.nproc_per_node), "GROUP_RANK": str(layout.node_rank),
        "MASTER_ADDR": layout.master_addr, "MASTER_PORT": str(port),
        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "0",
    })
    if layout.loopback:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    if layout.nproc_per_node > 1:
        env.setdefault("OMP_NUM_THREADS", "1")  # as torchrun does: workers share the node's cores
    return env


class WorkerGroup:
    """This node's worker processes: ``poll()`` is None while they run, else the group's exit code.

    A failing worker (of this node, or reported by another node) stops the others.
    """

    def __init__(self, procs: list[subprocess.Popen], rendezvous: Rendezvous | None = None) -> None:
        self.procs = procs
        self.rendezvous = rendezvous
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        codes = [p.poll() for p in self.procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        remote = self.rendezvous.failed() if self.rendezvous is not None else None
        if failed or remote:
            if failed and self.rendezvous is not None:
                rank, code = failed[0]
                self.rendezvous.fail(f"node {self.rendezvous.layout.node_rank} local rank {rank} exited with {code}")
            if remote and not failed:
                log.error("stopping this node's workers: %s", remote)
            self.stop()
            self.returncode = failed[0][1] if failed else 1
            return self.returncode
        if all(c == 0 for c in codes):
            self.returncode = 0
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(POLL_S)
        assert self.returncode is not None
        return self.returncode

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every worker's process group, then SIGKILL what is left after ``grace_s``."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self) -> None:
        if self.rendezvous is not None:
            self.rendezvous.close()


def start_group(cmd: Sequence[str], layout: GroupLayout, env: Mapping[str, str]) -> WorkerGroup:
    """Host or join the rendezvous, check this node in, and start its ``nproc_per_node`` workers."""
    rendezvous = Rendezvous(layout)
    try:
        rendezvous.join()
    except BaseException:
        rendezvous.close()
        raise
    procs = [subprocess.Popen(list(cmd), env=worker_env(layout, rendezvous.port, r, env), start_new_session=True)
             for r in range(layout.nproc_per_node)]
    log.info("node %d: %d worker(s) in a group of %d (store %s:%d)", layout.node_rank, len(procs),
             layout.world_size, layout.master_addr, rendezvous.port)
    return WorkerGroup(procs, rendezvous)


def start_single(cmd: Sequence[str], env: Mapping[str, str]) -> WorkerGroup:
    """One process outside any group (a producer, a coordinator, a one-process trainer)."""
    return WorkerGroup([subprocess.Popen(list(cmd), env=dict(env), start_new_session=True)])

