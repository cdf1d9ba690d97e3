"""The numbers a run ends with, named the same for every observer (TensorBoard, W&B, ...).

``specforge_on_run_finished`` hands observers eval.json's report; ``final_scalars`` flattens it
into the few numbers a dashboard compares runs by. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def final_scalars(report: Mapping[str, Any] | None) -> dict[str, float]:
    """``final/tau_before``, ``final/tau_after`` and ``final/speedup`` (the trained draft's measured
    speed-up over plain greedy decoding, when measured) of a final evaluation; {} without one."""
    if not report:
        return {}
    scalars: dict[str, float] = {}
    for label in ("before", "after"):
        tau = (report.get(label) or {}).get("tau")
        if isinstance(tau, (int, float)):
            scalars[f"final/tau_{label}"] = float(tau)
    speedup = (report.get("after") or {}).get("speedup")
    if isinstance(speedup, (int, float)) and speedup > 0:
        scalars["final/speedup"] = float(speedup)
    return scalars
