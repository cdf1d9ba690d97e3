"""Listening sockets: bind exactly one address, and see what a process listens on.

Nothing SpecForge starts may listen beyond loopback unless the user gives another address.
torch's ``TCPStore`` server listens on every interface whatever host it is given; handing it a
socket bound here (``master_listen_fd``) keeps it on the address chosen. Plugins whose native
libraries open their own listeners (Mooncake) check them with ``held_by``: it reads
``/proc/net/{tcp,tcp6}`` (LISTEN) and ``/proc/net/{udp,udp6}`` (bound and unconnected, so they
receive from anyone) and maps each socket's inode to the process holding it. Linux only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from specforge.errors import SpecforgeError


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, IPv4-mapped loopback (``::ffff:127.x.y.z``), or a name resolving to one."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError):
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def bound_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on exactly ``host:port`` (port 0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SpecforgeError(f"cannot listen on {host}:{port} for {what}: {exc.strerror or exc}; choose another "
                             f"port, or an address of this machine") from None
    sock.listen(1024)
    return sock


def host_store(host: str, port: int, what: str, timeout_s: float) -> tuple[object, socket.socket]:
    """A ``TCPStore`` server listening on exactly ``host:port``; keep the socket open as long as it."""
    import datetime

    from torch.distributed import TCPStore

    sock = bound_socket(host, port, what)
    store = TCPStore(host, sock.getsockname()[1], is_master=True, wait_for_workers=False,
                     master_listen_fd=sock.fileno(), timeout=datetime.timedelta(seconds=timeout_s), use_libuv=True)
    return store, sock


# ----------------------------------------------------------------- who listens where

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


def owned_sockets(pids: Iterable[int] | None) -> list[Socket]:
    """The sockets accepting traffic now, with owners, held by ``pids`` (None: all, owned or not)."""
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
    return owned_sockets(list(pids))


def describe(sockets: Iterable[Socket]) -> str:
    return "; ".join(str(s) for s in sockets) or "none"
