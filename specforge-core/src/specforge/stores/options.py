"""Options of the built-in stores; torch-free so registration and ``--plan`` can read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.options import Range, StoreOptions

StoreDtype = Literal["target", "bfloat16", "float16"]


@dataclass(frozen=True)
class MemoryStoreOptions(StoreOptions):
    """``[store]`` keys of the ``memory`` store."""

    max_resident_bytes: Annotated[int, Range(ge=0, note="0 means unlimited")] = 0
    """Tensor bytes the store may hold (as stored); a put beyond it fails."""
    dtype: StoreDtype = "target"
    """Precision floating features are kept at: target (as captured), bfloat16 or float16 (half of
    float32's bytes, rounded to 8 or 11 significant bits; get returns the captured dtype)."""


@dataclass(frozen=True)
class DiskStoreOptions(StoreOptions):
    """``[store]`` keys of the ``disk`` store."""

    root: str = ""
    """Folder the store lives in; empty: the run's ``features`` folder. Point several runs (or
    ``specforge capture --output-dir``) at one root to share captured features."""
    read_only: bool = False
    """Never write: features that do not match the run (another target, request, data...) are an
    error naming what changed, not a re-capture."""
    shard_size: Annotated[int, Range(ge=1)] = 1000
    """Samples per folder (approximate when several processes write)."""
    fsync: bool = False
    """fsync every file and manifest line: survives power loss, costs latency."""
    dtype: StoreDtype = "target"
    """Precision floating features are kept at: target (as captured), bfloat16 or float16 (half of
    float32's bytes, rounded to 8 or 11 significant bits; get returns the captured dtype; float16
    refuses values above 65504). input_ids and loss_mask are kept exactly."""
