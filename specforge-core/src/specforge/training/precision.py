"""``training.precision``: which dtype the draft's weights, optimizer state and compute use.

- ``fp32``: everything in float32.
- ``bf16-mixed``: trainable weights and AdamW state stay float32 (the "master" copies), the
  forward runs under bf16 autocast (on CUDA and on CPU); FSDP2 gathers bf16 parameters and
  reduces gradients in float32.
- ``bf16``: the whole draft, and so its optimizer state, in bfloat16 (least memory, least
  precise updates).
- ``auto`` (default): ``bf16-mixed`` on CUDA, ``fp32`` elsewhere.
"""

from __future__ import annotations

import contextlib
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16-mixed", "bf16")


def resolve_precision(name: str, device_type: str) -> str:
    """The concrete precision for a device type (``cuda``, ``cpu``, ...)."""
    if name == "auto":
        return "bf16-mixed" if device_type == "cuda" else "fp32"
    return name


def describe_precision(name: str, device: str) -> str:
    """For ``--plan`` (torch-free): what ``name`` means on the configured device."""
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "auto: bf16-mixed (CUDA)"
    if device == "cpu":
        return "auto: fp32 (CPU)"
    return "auto: bf16-mixed on CUDA, fp32 on CPU"


def apply_to_draft(draft: Any, precision: str) -> Any:
    """Cast the draft for ``precision`` (frozen target weights stay as they are under bf16-mixed)."""
    import torch

    if precision == "bf16":
        return draft.to(torch.bfloat16)
    if precision == "fp32":
        return draft.float()
    for param in draft.parameters():  # bf16-mixed: float32 masters of what trains
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return draft


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fsdp_policy(precision: str) -> Any:
    """FSDP2's MixedPrecisionPolicy for ``precision`` (None: parameters as they are)."""
    if precision != "bf16-mixed":
        return None
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
