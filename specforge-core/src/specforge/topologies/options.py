"""Options of the built-in topologies (torch-free: registration imports them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfflineOptions:
    """No options yet: the capture batch size is ``training.capture_batch_size``."""


@dataclass(frozen=True)
class OnlineOptions:
    """No options yet."""


@dataclass(frozen=True)
class DisaggregatedOptions:
    """Producers and trainers in separate processes, coordinated through a TCPStore."""

    role: str = "auto"  # auto (one machine: start everything) | coordinator | producer | trainer
    coordinator: str = ""  # HOST:PORT of the control plane; empty on one machine (a free loopback port)
    num_producers: int = 1
    producer_index: int = 0  # which producer this process is (set by the launcher)
    max_inflight: int = 64  # captured-but-unacknowledged samples allowed (at least one optimizer step)
    producer_restarts: int = 0  # how often the launcher restarts a crashed producer
    poll_s: float = 0.01
    wait_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.role not in ("auto", "coordinator", "producer", "trainer"):
            raise ValueError(f"topology.role must be auto, coordinator, producer or trainer, got {self.role!r}")
        if self.num_producers < 1 or not 0 <= self.producer_index < self.num_producers:
            raise ValueError("topology.num_producers must be >= 1 and producer_index in [0, num_producers)")
        if self.max_inflight < 1:
            raise ValueError("topology.max_inflight must be at least 1")
