"""Dtype names <-> torch dtypes and byte sizes: the dtype vocabulary every store shares.

The names are those of ``TensorSpec.dtype`` (torch's name without ``torch.``). The table is
torch-free; ``torch_dtype`` imports torch only when called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specforge.contracts import ITEMSIZE, FeatureRecord, TensorSpec

DTYPE_BYTES: Mapping[str, int] = ITEMSIZE  # one table for the whole project (contracts.py)
"""Every dtype a store must move bit-exactly, with its element size in bytes."""

SUPPORTED_DTYPES: tuple[str, ...] = tuple(DTYPE_BYTES)


def _unsupported(name: str) -> TypeError:
    return TypeError(f"dtype {name!r} is not supported by feature stores; "
                     f"use one of {', '.join(SUPPORTED_DTYPES)} (e.g. tensor.to(torch.float32))")


def torch_dtype(name: str) -> Any:
    """The ``torch.dtype`` called ``name`` (a TypeError naming the supported ones otherwise)."""
    if name not in DTYPE_BYTES:
        raise _unsupported(name)
    import torch

    return getattr(torch, name)


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``; a TypeError for dtypes stores do not carry."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise _unsupported(name)
    return name


def spec_bytes(spec: TensorSpec) -> int:
    """Bytes of one tensor's data, unpadded."""
    if spec.dtype not in DTYPE_BYTES:
        raise _unsupported(spec.dtype)
    return spec.numel * DTYPE_BYTES[spec.dtype]


def record_bytes(record: FeatureRecord, names: Any = None) -> int:
    """Bytes of a record's tensors (or of ``names`` among them), unpadded."""
    chosen = record.specs if names is None else {n: record.specs[n] for n in names}
    return sum(spec_bytes(s) for s in chosen.values())
