"""The data plan: which samples each rank trains on, per epoch, deterministically.

Every rank gets exactly the same number of micro-batches (else the collectives deadlock): an
epoch uses ``steps_per_epoch * batch * accumulation * world`` samples of a seeded permutation;
the tail is dropped (and reported). Resume skips to a micro-batch index, no state needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DataPlan:
    num_samples: int
    batch_size: int
    accumulation: int
    world_size: int
    epochs: int
    seed: int
    max_steps: int = 0

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.accumulation * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.samples_per_step

    @property
    def dropped_per_epoch(self) -> int:
        return self.num_samples - self.steps_per_epoch * self.samples_per_step

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps else total

    def epoch_batches(self, epoch: int, rank: int) -> list[list[int]]:
        """Sample indices of each micro-batch this rank trains in ``epoch``."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_samples, generator=gen).tolist()
        b, w = self.batch_size, self.world_size
        micro = self.steps_per_epoch * self.accumulation
        return [order[(m * w + rank) * b:(m * w + rank + 1) * b] for m in range(micro)]

    def needed_by(self, rank: int) -> list[int]:
        """Every sample index this rank trains on in the planned steps, sorted: with ``max_steps``
        only those its first ``max_steps`` steps read, so a short run captures no more than that."""
        needed: set[int] = set()
        micro_left = self.total_steps * self.accumulation
        for epoch in range(self.epochs):
            if micro_left <= 0:
                break
            for batch in self.epoch_batches(epoch, rank)[:micro_left]:
                needed.update(batch)
            micro_left -= self.steps_per_epoch * self.accumulation
        return sorted(needed)

    def needed(self) -> list[int]:
        """Every sample index any rank trains on in the planned steps, sorted."""
        return sorted({i for rank in range(self.world_size) for i in self.needed_by(rank)})
