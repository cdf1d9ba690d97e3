"""``[store]`` keys of the ``mooncake`` store; torch-free and mooncake-free (``--plan`` reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MooncakeStoreOptions:
    """How to reach a Mooncake master and how much memory this process lends to the pool.

    ``master_address=""`` (the default) starts a *managed* master on free 127.0.0.1 ports for
    this store and stops it when the store closes or the process exits. Objects live in the
    memory of the processes that set ``global_segment_size > 0`` (segment owners); a process
    with ``global_segment_size = 0`` is a pure client whose writes survive its own exit.
    """

    master_address: str = ""  # "host:port" of a running master; "" = managed master on 127.0.0.1
    metadata_server: str = "P2PHANDSHAKE"  # or "http://host:port/metadata", "etcd://...", "redis://..."
    protocol: Literal["tcp", "rdma"] = "tcp"
    rdma_devices: str = ""  # e.g. "mlx5_0,mlx5_1"; "" = let Mooncake discover them (rdma only)
    local_hostname: str = "127.0.0.1"  # this process's address as the other processes reach it
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

    @property
    def managed(self) -> bool:
        """This store starts (and stops) its own master."""
        return not self.master_address

    @property
    def segment_owner(self) -> bool:
        """Objects may be placed in this process's memory (and vanish when it closes)."""
        return self.global_segment_size > 0
