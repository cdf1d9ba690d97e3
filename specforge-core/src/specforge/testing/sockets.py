"""Which sockets on this machine accept traffic, and which new ones a run opened beyond loopback.

For tests that promise "nothing of ours listens beyond loopback": the sockets that accept traffic
(``specforge.net`` reads them and their owners from /proc), compared with a snapshot taken
before the run. Processes that live only briefly are caught by
``SocketSampler``, a thread that takes a snapshot every ~50 ms while the run goes on:

    with SocketSampler() as sampler:          # owners: this process and its descendants
        run_the_thing()
    assert not sampler.exposed(), describe(sampler.exposed())

The sampler is a thread: native code that holds the GIL in this process (a Mooncake client's
setup, say) pauses it, so call ``sample()`` at the moments that matter in-process; processes
sampled from outside (children, a ``specforge run``) need nothing extra.

Linux only; torch-free. Sockets of processes whose ``/proc/<pid>/fd`` cannot be read (other
users') have no owner, and a sampler restricted to a process tree ignores them. The tables are
those of the reading process's network namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from specforge.net import (
    Socket,
    descendants,
    describe,
    held_by,
    is_loopback,
    owned_sockets,
    parse_address,
    parse_table,
    read_tables,
    socket_owners,
)


def snapshot(root: int | None = None) -> frozenset[Socket]:
    """The sockets accepting traffic now, with owners; only those of ``root``'s process tree if given."""
    return frozenset(owned_sockets(None if root is None else descendants(root)))


def new_exposed(before: Iterable[Socket], after: Iterable[Socket]) -> list[Socket]:
    """Sockets in ``after`` that were not in ``before`` (by inode) and are not on loopback."""
    old = {s.inode for s in before}
    return sorted((s for s in after if s.inode not in old and not s.loopback), key=str)


class SocketSampler:
    """Snapshots before, every ``interval_s`` during, and after a ``with`` block.

    ``root`` (default: this process) limits the sockets to that process and its descendants at
    the moment of each sample, so other users of a shared machine do not count; ``root=None``
    watches the whole machine. ``seen`` keeps every socket a sample found that ``before`` lacked.
    """

    def __init__(self, interval_s: float = 0.05, root: int | None = -1) -> None:
        self.interval_s = interval_s
        self.root = os.getpid() if root == -1 else root
        self.before: frozenset[Socket] = frozenset()
        self.seen: dict[int, Socket] = {}  # inode -> socket, new since ``before``
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Take one snapshot now and keep what is new."""
        found = snapshot(self.root)
        old = {s.inode for s in self.before}
        with self._lock:
            self.samples += 1
            for s in found:
                if s.inode not in old:
                    self.seen.setdefault(s.inode, s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> SocketSampler:
        self.before = snapshot(self.root)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="socket-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def new(self) -> list[Socket]:
        """Every socket seen during the block that was not there before it."""
        with self._lock:
            return sorted(self.seen.values(), key=str)

    def exposed(self) -> list[Socket]:
        """The new sockets that were not on loopback."""
        return [s for s in self.new() if not s.loopback]


__all__ = [
    "Socket",
    "SocketSampler",
    "descendants",
    "describe",
    "held_by",
    "is_loopback",
    "new_exposed",
    "parse_address",
    "parse_table",
    "read_tables",
    "snapshot",
    "socket_owners",
]
