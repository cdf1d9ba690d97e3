"""Options of the built-in stores; torch-free so registration and ``--plan`` can read them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryStoreOptions:
    """``[store]`` keys of the ``memory`` store."""

    max_resident_bytes: int = 0  # tensor bytes a put may not exceed; 0 = unlimited

    def __post_init__(self) -> None:
        if self.max_resident_bytes < 0:
            raise ValueError(f"max_resident_bytes must be >= 0 (0 = unlimited), got {self.max_resident_bytes}")


@dataclass(frozen=True)
class DiskStoreOptions:
    """``[store]`` keys of the ``disk`` store."""

    shard_size: int = 1000  # samples per folder (approximate when several processes write)
    fsync: bool = False  # fsync every file and manifest line: survives power loss, costs latency

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1 sample per folder, got {self.shard_size}")
