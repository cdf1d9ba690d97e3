"""Where this process's Mooncake listeners bind, and a check that they bound nowhere else.

The address follows the options: ``listen_host`` when set, else the address of
``local_hostname`` (127.0.0.1 by default), so only what other processes are told to reach is
reachable. The check reads the kernel's socket tables after Mooncake has started: a listener
of this process (or of a managed master) on any other address is an error, not an exposure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator

from specforge.api.net import Socket, held_by
from specforge_mooncake.errors import MooncakeError
from specforge_mooncake.options import EVERY_INTERFACE, MooncakeStoreOptions, host_part


def ipv4_of(host: str) -> str | None:
    """``host`` as an IPv4 address (a name is resolved); None for a wildcard ("" included)."""
    if host in ("", *EVERY_INTERFACE):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise MooncakeError(f"{host!r} does not resolve to an IPv4 address ({exc}); set store.listen_host "
                                f"to the address to listen on") from None
        return str(infos[0][4][0])
    if address.version != 4:
        raise MooncakeError(f"{host!r} is IPv6, but Mooncake's handshake listens on IPv4: use an IPv4 address "
                            f"(127.0.0.1 on one machine) in store.local_hostname, or set store.listen_host")
    return str(address)


def bind_address(options: MooncakeStoreOptions) -> str | None:
    """The IPv4 address Mooncake's listeners in this process bind; None means every interface."""
    if options.listen_host in EVERY_INTERFACE:
        return None
    return ipv4_of(options.listen_host or host_part(options.local_hostname))


ADVERTISE_ENV = "MC_TCP_BIND_ADDRESS"
"""Despite its name, the handshake address Mooncake *advertises* when the metadata server is not
P2PHANDSHAKE (``transfer_engine_impl.cpp``); unset, it advertises the machine's first LAN address."""


@contextlib.contextmanager
def advertised(options: MooncakeStoreOptions, address: str | None) -> Iterator[None]:
    """While a client starts: advertise the address it listens on (not a LAN address it does not),
    unless every interface was asked for or the user set ``MC_TCP_BIND_ADDRESS`` themselves."""
    if address is None or ADVERTISE_ENV in os.environ:
        yield
        return
    os.environ[ADVERTISE_ENV] = ipv4_of(host_part(options.local_hostname)) or address
    try:
        yield
    finally:
        os.environ.pop(ADVERTISE_ENV, None)


def listeners_of(pids: Iterable[int]) -> dict[int, Socket]:
    """inode -> socket, for the sockets accepting traffic that ``pids`` hold now."""
    return {s.inode: s for s in held_by(pids)}


def own_listeners() -> dict[int, Socket]:
    return listeners_of([os.getpid()])


def on(address: str, s: Socket) -> bool:
    """Whether ``s`` is bound to exactly ``address`` (an IPv6 socket bound to its mapped form counts)."""
    return s.host in (address, f"::ffff:{address}")


def stray(sockets: Iterable[Socket], address: str | None) -> list[Socket]:
    """The sockets not bound to ``address`` (none when ``address`` is None: every interface was asked for)."""
    return [] if address is None else sorted((s for s in sockets if not on(address, s)), key=str)
