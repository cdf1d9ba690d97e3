"""Listening sockets bound to exactly one address: how nothing of ours listens beyond loopback.

torch's ``TCPStore`` server listens on every interface whatever host it is given; handing it a
socket bound here (``master_listen_fd``) keeps it on the address the user chose.
"""

from __future__ import annotations

import ipaddress
import socket

from specforge.errors import SpecforgeError


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


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
