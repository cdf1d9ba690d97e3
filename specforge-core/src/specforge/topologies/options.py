"""Options of the built-in topologies (torch-free: registration imports them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.options import Range, TopologyOptions


@dataclass(frozen=True)
class OfflineOptions(TopologyOptions):
    """No options yet: the capture batch size is ``training.capture_batch_size``."""


@dataclass(frozen=True)
class OnlineOptions(TopologyOptions):
    """No options yet."""


@dataclass(frozen=True)
class DisaggregatedOptions(TopologyOptions):
    """Producers and trainers in separate processes, coordinated through a TCPStore."""

    role: Literal["auto", "coordinator", "producer", "trainer"] = "auto"
    """auto: one machine, start everything; coordinator, producer, trainer: one part, across machines."""
    coordinator: str = ""
    """HOST:PORT of the control plane. Empty on one machine (a free loopback port); the coordinator role
    listens on 127.0.0.1:29600 unless given a host (a non-loopback host exposes the control plane to that
    network)."""
    num_producers: Annotated[int, Range(ge=1)] = 1
    """Producer processes capturing features."""
    producer_index: Annotated[int, Range(ge=0)] = 0
    """Which producer this process is (set by the launcher)."""
    max_inflight: Annotated[int, Range(ge=1)] = 64
    """Captured-but-unacknowledged samples allowed (at least one optimizer step's worth)."""
    producer_restarts: Annotated[int, Range(ge=0)] = 0
    """How often the launcher restarts a crashed producer."""
    poll_s: Annotated[float, Range(gt=0)] = 0.01
    """Seconds between control-plane polls."""
    wait_timeout_s: Annotated[float, Range(gt=0)] = 600.0
    """Seconds a trainer waits for a sample before it fails naming the coordinator."""
    producer_devices: tuple[str, ...] = ()
    """One device per producer (``cuda:N`` or ``cpu``); empty: the first free accelerators."""
    trainer_devices: tuple[str, ...] = ()
    """One device per trainer rank; empty: the accelerators after the producers'. Listing a device
    in both shares it (only when asked)."""

    def problems(self) -> list[str]:
        out = []
        if self.producer_index >= self.num_producers:
            out.append(f"topology.producer_index {self.producer_index} must be below topology.num_producers "
                       f"{self.num_producers}")
        if self.producer_devices and len(self.producer_devices) != self.num_producers:
            out.append(f"topology.producer_devices names {len(self.producer_devices)} device(s) for "
                       f"{self.num_producers} producer(s); give one per producer")
        bad = [d for d in (*self.producer_devices, *self.trainer_devices)
               if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit())]
        if bad:
            out.append(f"topology devices {bad}: use 'cuda:N' or 'cpu'")
        return out
