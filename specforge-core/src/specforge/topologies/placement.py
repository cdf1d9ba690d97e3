"""Which device each disaggregated process gets: producers and trainers never share one unless asked.

Default: with A local accelerators, producers take the first ones and the trainer ranks the
next; fewer accelerators than processes is an error naming the options that share them
(``topology.producer_devices`` / ``topology.trainer_devices``). Without accelerators every
process runs on the CPU. Each process is told its device explicitly: its ``CUDA_VISIBLE_DEVICES``
holds only its own GPU(s), so ``cuda`` in it means the GPU it was given. Torch-free, so
``run --plan`` prints the placement.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from specforge.errors import ConfigError

SIMULATE_ENV = "SPECFORGE_SIMULATE_ACCELERATORS"
"""A count of accelerators to place processes on as if they existed (for ``--plan`` and tests)."""


def count_accelerators() -> int:
    """Local CUDA devices without importing torch: the simulation, CUDA_VISIBLE_DEVICES, or the driver."""
    if os.environ.get(SIMULATE_ENV):
        return int(os.environ[SIMULATE_ENV])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


@dataclass(frozen=True)
class Placement:
    """Devices as ``cuda:N`` (physical index) or ``cpu``, one per producer and one per trainer rank."""

    producers: tuple[str, ...]
    trainers: tuple[str, ...]

    def lines(self) -> list[str]:
        return ([f"producer {i} -> {d}" for i, d in enumerate(self.producers)]
                + [f"trainer rank {i} -> {d}" for i, d in enumerate(self.trainers)])


def place(num_producers: int, num_trainers: int, accelerators: int, *, producer_devices: tuple[str, ...] = (),
          trainer_devices: tuple[str, ...] = ()) -> Placement:
    """Explicit devices where given, else spread over the ``accelerators`` (none: cpu)."""
    if accelerators == 0 and not producer_devices and not trainer_devices:
        return Placement(("cpu",) * num_producers, ("cpu",) * num_trainers)
    free = [f"cuda:{i}" for i in range(accelerators)]
    taken = set(producer_devices) | set(trainer_devices)
    free = [d for d in free if d not in taken]
    producers = tuple(producer_devices) or tuple(free[:num_producers])
    free = [d for d in free if d not in producers]
    trainers = tuple(trainer_devices) or tuple(free[:num_trainers])
    if len(producers) < num_producers or len(trainers) < num_trainers:
        raise ConfigError(
            f"{num_producers} producer(s) and {num_trainers} trainer(s) need {num_producers + num_trainers} "
            f"accelerators, this machine has {accelerators}; to share devices set topology.producer_devices "
            f"and topology.trainer_devices (e.g. [\"cuda:0\"] and [\"cuda:0\"]), or fewer processes")
    return Placement(producers, trainers)


def visible_devices(devices: tuple[str, ...]) -> dict[str, str]:
    """The environment that gives a process exactly ``devices`` (nothing for cpu)."""
    gpus = [d.split(":", 1)[1] for d in devices if d.startswith("cuda:")]
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {}
