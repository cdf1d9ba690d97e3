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

STORE_DTYPES: tuple[str, ...] = ("target", "bfloat16", "float16")
"""``store.dtype`` values: keep floating features as captured, or at rest in 16 bits."""
FLOATING: frozenset[str] = frozenset({"float64", "float32", "float16", "bfloat16"})


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


def stored_dtype(name: str, store_dtype: str) -> str:
    """The dtype a tensor of dtype ``name`` is kept in under ``store.dtype = store_dtype``: floating
    tensors in ``store_dtype`` (unless it is ``target``), everything else (input_ids, loss_mask) as is."""
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype {store_dtype!r}: use one of {', '.join(STORE_DTYPES)}")
    return store_dtype if store_dtype != "target" and name in FLOATING else name


def to_store(tensor: Any, store_dtype: str, where: str = "") -> Any:
    """``tensor`` in the dtype the store keeps it in; float16 refuses values it would turn into inf."""
    name = dtype_name(tensor.dtype)
    target = stored_dtype(name, store_dtype)
    if target == name:
        return tensor
    out = tensor.to(torch_dtype(target))
    if target == "float16":
        import torch

        overflow = torch.isinf(out) & torch.isfinite(tensor)
        if bool(overflow.any()):
            big = float(tensor[overflow].abs().max())
            raise ValueError(f"put {where}: a value of magnitude {big:.4g} overflows float16 (max 65504); use "
                             f"store.dtype = \"bfloat16\" (float32's range) or \"target\"")
    return out


def from_store(tensor: Any, name: str) -> Any:
    """A stored tensor back in the dtype ``name`` it was put in (a new tensor when converted)."""
    return tensor if dtype_name(tensor.dtype) == name else tensor.to(torch_dtype(name))
