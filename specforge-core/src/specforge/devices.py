"""Device and dtype names -> torch objects, decided in one place (torch imported when called)."""

from __future__ import annotations

from typing import Any

from specforge.errors import ConfigError

DTYPES = ("float32", "float64", "bfloat16", "float16")


def resolve_device(requested: str, local_rank: int = 0) -> Any:
    """``auto`` is this process's GPU when one exists, else cpu; ``cuda`` means ``cuda:<local rank>``."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", local_rank)
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise ConfigError(f"device {requested!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc


def resolve_dtype(name: str) -> Any:
    """The torch dtype called ``name`` (one of ``DTYPES``)."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"dtype {name!r} is not supported; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)
