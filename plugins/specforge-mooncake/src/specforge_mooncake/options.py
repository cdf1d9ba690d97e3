"""``[store]`` keys of the ``mooncake`` store; torch-free and mooncake-free (``--plan`` reads them)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.api import Range, StoreOptions
from specforge.api.stores import StoreDtype

EVERY_INTERFACE = ("0.0.0.0", "::")
"""``listen_host`` values that keep Mooncake's own behaviour: its listeners bind every interface."""


@dataclass(frozen=True)
class MooncakeStoreOptions(StoreOptions):
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

    master_address: str = ""
    """``host:port`` of a running master; empty: a managed master on ``listen_host``."""
    metadata_server: str = "P2PHANDSHAKE"
    """Or ``http://host:port/metadata``, ``etcd://...``, ``redis://...``."""
    protocol: Literal["tcp", "rdma"] = "tcp"
    """Transport between processes."""
    rdma_devices: str = ""
    """e.g. ``mlx5_0,mlx5_1``; empty: let Mooncake discover them (rdma only)."""
    local_hostname: str = "127.0.0.1"
    """This process's address as the other processes reach it."""
    listen_host: str = ""
    """IPv4 address our listeners bind; empty: local_hostname's; ``0.0.0.0``: every interface
    (exposes the features, which have no authentication, to every network of the machine)."""
    global_segment_size: Annotated[int, Range(ge=0, note="0 means a pure client")] = 4 << 30
    """Bytes this process lends to the pool (mapped lazily)."""
    local_buffer_size: Annotated[int, Range(ge=1)] = 16 << 20
    """Mooncake's own staging buffer (the store's transfers bypass it, but Mooncake needs one)."""
    preferred_segment: str = ""
    """Segment (``host:port``) new objects go to first; empty: our own, if we own one."""
    lease_ttl_ms: Annotated[int, Range(ge=1)] = 10_000
    """Managed master only: how long a read protects an object from removal."""
    delete_wait_s: Annotated[float, Range(ge=0)] = 0.1
    """How long delete retries a read-leased object before forcing it."""
    connect_timeout_s: Annotated[float, Range(gt=0)] = 10.0
    """How long to wait for the master's port before giving up."""
    dtype: StoreDtype = "target"
    """Precision floating features travel and rest at: target (as captured), bfloat16 or float16 (half of
    float32's bytes and transfer time, rounded to 8 or 11 significant bits; get returns the captured dtype;
    float16 refuses values above 65504). input_ids and loss_mask are moved exactly."""

    def problems(self) -> list[str]:
        out = []
        if self.master_address:
            host, sep, port = self.master_address.rpartition(":")
            if not sep or not host or not port.isdigit():
                out.append(f"store.master_address {self.master_address!r}: expected 'host:port' "
                           f"(e.g. '10.0.0.5:50051'), or '' to start a managed master")
        out += self._listen_host_problems()
        return out

    def _listen_host_problems(self) -> list[str]:
        if not self.local_hostname:
            return ["store.local_hostname must not be empty: it is this process's address as the others reach "
                    "it (127.0.0.1 on one machine)"]
        if self.listen_host in ("", *EVERY_INTERFACE):
            return []
        try:
            listen = ipaddress.IPv4Address(self.listen_host)
        except ValueError:
            return [f"store.listen_host {self.listen_host!r}: use an IPv4 address of this machine, \"\" for the "
                    f"address in local_hostname, or \"0.0.0.0\" for every interface"]
        local = _ip(host_part(self.local_hostname))
        if listen.is_loopback and local is not None and not local.is_loopback:
            return [f"store.listen_host {self.listen_host!r} is loopback but local_hostname "
                    f"{self.local_hostname!r} is not: other machines could not reach this process; set "
                    f"store.listen_host to that address (or \"\")"]
        return []

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
