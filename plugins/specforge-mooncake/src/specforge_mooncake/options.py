"""``[store]`` keys of the ``mooncake`` store; torch-free and mooncake-free (``--plan`` reads them)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

EVERY_INTERFACE = ("0.0.0.0", "::")
"""``listen_host`` values that keep Mooncake's own behaviour: its listeners bind every interface."""


@dataclass(frozen=True)
class MooncakeStoreOptions:
    """How to reach a Mooncake master and how much memory this process lends to the pool.

    ``master_address=""`` (the default) starts a *managed* master on free ports of
    ``listen_host`` (127.0.0.1 by default) for this store and stops it when the store closes or
    the process exits. Objects live in the memory of the processes that set
    ``global_segment_size > 0`` (segment owners); a process with ``global_segment_size = 0`` is
    a pure client whose writes survive its own exit.

    Every listener this store starts (the managed master's RPC and metrics ports, this
    process's transfer-engine RPC and TCP ports) binds ``listen_host``, which by default is
    the address in ``local_hostname``: 127.0.0.1 unless the user names another address.
    """

    master_address: str = ""  # "host:port" of a running master; "" = a managed master on listen_host
    metadata_server: str = "P2PHANDSHAKE"  # or "http://host:port/metadata", "etcd://...", "redis://..."
    protocol: Literal["tcp", "rdma"] = "tcp"
    rdma_devices: str = ""  # e.g. "mlx5_0,mlx5_1"; "" = let Mooncake discover them (rdma only)
    local_hostname: str = "127.0.0.1"  # this process's address as the other processes reach it
    listen_host: str = ""  # IPv4 address our listeners bind; "" = local_hostname's; "0.0.0.0" = every interface
    global_segment_size: int = 4 << 30  # bytes this process lends to the pool (mapped lazily); 0 = pure client
    local_buffer_size: int = 16 << 20  # Mooncake's own staging buffer; the store's transfers bypass it
    preferred_segment: str = ""  # segment ("host:port") new objects go to first; "" = our own, if we own one
    lease_ttl_ms: int = 10_000  # managed master only: how long a read protects an object from removal
    delete_wait_s: float = 0.1  # how long delete retries a read-leased object before forcing it
    connect_timeout_s: float = 10.0  # how long to wait for the master's port before giving up

    def __post_init__(self) -> None:
        if self.master_address:
            host, sep, port = self.master_address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"master_address {self.master_address!r}: expected 'host:port' "
                                 f"(e.g. '10.0.0.5:50051'), or '' to start a managed master")
        self._check_listen_host()
        if self.protocol not in ("tcp", "rdma"):
            raise ValueError(f"protocol {self.protocol!r}: use 'tcp' or 'rdma'")
        for name in ("global_segment_size", "local_buffer_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 bytes, got {getattr(self, name)}")
        if self.local_buffer_size == 0:
            raise ValueError("local_buffer_size must be > 0 bytes (Mooncake needs a staging buffer)")
        if self.lease_ttl_ms < 1:
            raise ValueError(f"lease_ttl_ms must be >= 1, got {self.lease_ttl_ms}")
        if self.delete_wait_s < 0 or self.connect_timeout_s <= 0:
            raise ValueError("delete_wait_s must be >= 0 and connect_timeout_s > 0")

    def _check_listen_host(self) -> None:
        if not self.local_hostname:
            raise ValueError("local_hostname must not be empty: it is this process's address as the others reach "
                             "it (127.0.0.1 on one machine)")
        if self.listen_host in ("", *EVERY_INTERFACE):
            return
        try:
            listen = ipaddress.IPv4Address(self.listen_host)
        except ValueError:
            raise ValueError(f"listen_host {self.listen_host!r}: use an IPv4 address of this machine, \"\" for the "
                             f"address in local_hostname, or \"0.0.0.0\" for every interface") from None
        local = _ip(host_part(self.local_hostname))
        if listen.is_loopback and local is not None and not local.is_loopback:
            raise ValueError(f"listen_host {self.listen_host!r} is loopback but local_hostname "
                             f"{self.local_hostname!r} is not: other machines could not reach this process; set "
                             f"store.listen_host to that address (or \"\")")

    @property
    def managed(self) -> bool:
        """This store starts (and stops) its own master."""
        return not self.master_address

    @property
    def segment_owner(self) -> bool:
        """Objects may be placed in this process's memory (and vanish when it closes)."""
        return self.global_segment_size > 0


def host_part(hostname: str) -> str:
    """``local_hostname`` without a ``:port`` Mooncake allows after it (``[v6]:port`` too)."""
    if hostname.startswith("["):
        return hostname[1:hostname.index("]")] if "]" in hostname else hostname
    host, sep, port = hostname.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else hostname


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # a host name: resolved when the store connects
