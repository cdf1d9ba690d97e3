"""Small, generic torch building blocks that strategy plugins share (``specforge.api.nn``).

Import the submodules (or ``specforge.api.nn``) when needed: this package imports no torch
itself, so nothing on the CLI's start-up path pays for it.

- ``norm``: RMSNorm
- ``rope``: rotary embedding from a target config (default, linear, llama3, yarn, dynamic, ...)
- ``mlp``: SwiGLU MLP
- ``attention``: GQA ``repeat_kv`` and boolean causal/padding masks
"""

from __future__ import annotations

from typing import Any


def unwrap(model: Any) -> Any:
    """The model inside a DDP-style ``.module`` wrapper (FSDP2 does not wrap), or the model itself."""
    return getattr(model, "module", model)
