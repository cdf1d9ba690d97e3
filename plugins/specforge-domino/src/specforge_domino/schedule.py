"""The base-anchored curriculum: λ weighs CE(base) against CE(final) and decays to 0."""

from __future__ import annotations


def lambda_base(step: int, total_steps: int, start: float, decay_ratio: float) -> float:
    """λ after ``step`` completed optimizer steps: linear from ``start`` to 0 over decay_ratio·total.

    An unknown total (<= 0) gives 0, as upstream does: the final logits are trained alone.
    """
    if total_steps <= 0:
        return 0.0
    horizon = max(1, int(total_steps * decay_ratio))
    value = start * (1.0 - min(step / horizon, 1.0))
    return min(max(value, 0.0), 1.0)
