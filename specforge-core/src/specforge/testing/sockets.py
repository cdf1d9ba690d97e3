"""Which sockets on this machine accept traffic, and which new ones a run opened beyond loopback.

For tests that promise "nothing of ours listens beyond loopback": read ``/proc/net/{tcp,tcp6}``
(state LISTEN) and ``/proc/net/{udp,udp6}`` (unconnected and bound, so they receive from
anyone), map each socket's inode to the process holding it (``/proc/<pid>/fd``), and compare
with a snapshot taken before the run. Processes that live only briefly are caught by
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

import contextlib
import dataclasses
import ipaddress
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # include/net/tcp_states.h
UDP_UNCONNECTED = "07"  # TCP_CLOSE: bound but not connected, so any peer can send to it
_TABLES = {"tcp": TCP_LISTEN, "tcp6": TCP_LISTEN, "udp": UDP_UNCONNECTED, "udp6": UDP_UNCONNECTED}


@dataclass(frozen=True)
class Socket:
    """One socket that accepts traffic: its table, local address and port, and owner if known."""

    proto: str  # "tcp", "tcp6", "udp" or "udp6" (the /proc/net table it was read from)
    host: str  # the local address as ipaddress prints it: "0.0.0.0", "::", "::ffff:127.0.0.1"
    port: int
    inode: int  # the kernel's identity for the socket; a new socket has a new inode
    pid: int | None = None  # a process holding it (None: not found, or not readable)
    command: str = ""  # that process's /proc/<pid>/comm

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def __str__(self) -> str:
        owner = f"pid {self.pid} {self.command}" if self.pid is not None else "owner unknown"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.proto} {host}:{self.port} ({owner})"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (``::ffff:127.x.y.z``); wildcards are not."""
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def parse_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` or a 32-digit IPv6 form, as the kernel prints them, to (host, port).

    The kernel prints each 32-bit word of the network-order address as a host-order integer,
    so on a little-endian machine the bytes of every word come out reversed.
    """
    hex_address, hex_port = text.split(":")
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    host = f"::ffff:{mapped}" if mapped is not None else str(address)  # Python 3.10/3.11 print ::ffff:7f00:1
    return host, int(hex_port, 16)


def parse_table(proto: str, text: str) -> list[Socket]:
    """The sockets of one /proc/net table that accept traffic (LISTEN for TCP, unconnected for UDP)."""
    wanted = _TABLES[proto]
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != wanted:
            continue
        host, port = parse_address(fields[1])
        if port:  # an unbound UDP socket has port 0 and receives nothing
            sockets.append(Socket(proto, host, port, int(fields[9])))
    return sockets


def read_tables(protos: Iterable[str] = tuple(_TABLES)) -> list[Socket]:
    """Every socket that accepts traffic now, without owners (a missing table, e.g. no IPv6, is empty)."""
    sockets: list[Socket] = []
    for proto in protos:
        try:
            text = (PROC / "net" / proto).read_text()
        except FileNotFoundError:
            continue
        sockets += parse_table(proto, text)
    return sockets


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it (by parent pid, read now)."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = parent_of(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def socket_owners(pids: Iterable[int] | None = None) -> dict[int, int]:
    """socket inode -> a pid holding it, over ``pids`` (all processes when None) whose fds we may read."""
    owners: dict[int, int] = {}
    for pid in _pids() if pids is None else pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
            for fd in (PROC / str(pid) / "fd").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        owners.setdefault(int(target[8:-1]), pid)
    return owners


def _command(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def _owned(pids: Iterable[int] | None) -> list[Socket]:
    tables = read_tables()  # first: a socket listed here is still in its owner's fds, unless closed since
    owners = socket_owners(pids)
    found = []
    for s in tables:
        pid = owners.get(s.inode)
        if pid is not None:
            found.append(dataclasses.replace(s, pid=pid, command=_command(pid)))
        elif pids is None:
            found.append(s)
    return found


def held_by(pids: Iterable[int]) -> list[Socket]:
    """The sockets accepting traffic that ``pids`` hold now, with owners."""
    return _owned(list(pids))


def snapshot(root: int | None = None) -> frozenset[Socket]:
    """The sockets accepting traffic now, with owners; only those of ``root``'s process tree if given."""
    return frozenset(_owned(None if root is None else descendants(root)))


def new_exposed(before: Iterable[Socket], after: Iterable[Socket]) -> list[Socket]:
    """Sockets in ``after`` that were not in ``before`` (by inode) and are not on loopback."""
    old = {s.inode for s in before}
    return sorted((s for s in after if s.inode not in old and not s.loopback), key=str)


def describe(sockets: Iterable[Socket]) -> str:
    return "; ".join(str(s) for s in sockets) or "none"


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
