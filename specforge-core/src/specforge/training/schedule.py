"""Learning-rate schedule: linear warmup, then cosine to zero, in completed optimizer steps."""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based) of ``total_steps``."""
    warmup = int(warmup_ratio * total_steps)
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / rest)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
