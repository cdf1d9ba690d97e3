"""Checks every store applies to keys, tensors and requested names, with messages that name the fix."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from specforge.contracts import FeatureKey, FeatureRecord, TensorSpec
from specforge.stores.dtypes import dtype_name

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_namespace(namespace: str) -> str:
    """A namespace is one safe path component (the disk store makes it a folder)."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"store namespace {namespace!r}: use letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit (e.g. 'features')")
    return namespace


def check_key(key: Any, namespace: str) -> FeatureKey:
    """``key`` is a FeatureKey of this store's namespace with a usable id and generation."""
    if not isinstance(key, FeatureKey):
        raise TypeError(f"expected a FeatureKey, got {type(key).__name__}; "
                        f"build one with FeatureKey({namespace!r}, sample_id, generation)")
    if key.namespace != namespace:
        raise ValueError(f"key {key.path()} belongs to namespace {key.namespace!r}, but this store holds "
                         f"namespace {namespace!r}; open the store with namespace={key.namespace!r}")
    if not isinstance(key.sample_id, str) or not key.sample_id:
        raise ValueError(f"key {key!r}: sample_id must be a non-empty string")
    if isinstance(key.generation, bool) or not isinstance(key.generation, int) or key.generation < 0:
        raise ValueError(f"key {key.path()}: generation must be an integer >= 0, got {key.generation!r}")
    return key


def check_record(record: Any, namespace: str) -> FeatureRecord:
    if not isinstance(record, FeatureRecord):
        raise TypeError(f"expected a FeatureRecord (what put returned), got {type(record).__name__}")
    check_key(record.key, namespace)
    return record


def specs_of(key: FeatureKey, tensors: Mapping[str, Any]) -> dict[str, TensorSpec]:
    """Shape and dtype of each tensor to put; TypeError/ValueError naming the offending tensor."""
    import torch

    if not isinstance(tensors, Mapping) or not tensors:
        raise ValueError(f"put {key.path()}: expected a non-empty mapping of name -> tensor, got {tensors!r}")
    specs: dict[str, TensorSpec] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"put {key.path()}: tensor names must be non-empty strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"put {key.path()}: {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        if tensor.layout != torch.strided or tensor.is_quantized:
            raise TypeError(f"put {key.path()}: {name!r} has layout {tensor.layout}; convert it with "
                            f".to_dense() (stores move dense tensors only)")
        try:
            dtype = dtype_name(tensor.dtype)
        except TypeError as exc:
            raise TypeError(f"put {key.path()}: tensor {name!r}: {exc}") from None
        specs[name] = TensorSpec(tuple(int(d) for d in tensor.shape), dtype)
    return specs


def select_names(record: FeatureRecord, names: Iterable[str] | None) -> list[str]:
    """The names to read, in request order; KeyError naming an unknown one and the known ones."""
    if names is None:
        return list(record.specs)
    if isinstance(names, str):  # a bare string would be iterated letter by letter
        names = [names]
    chosen = list(dict.fromkeys(names))
    unknown = [n for n in chosen if n not in record.specs]
    if unknown:
        raise KeyError(f"{record.key.path()} has no feature(s) {unknown}; it holds {sorted(record.specs)}")
    return chosen


def check_put_generation(key: FeatureKey, resident: int | None) -> None:
    """A put may replace its own generation or an older one, never a newer one (a stale writer)."""
    if resident is not None and key.generation < resident:
        raise ValueError(f"put {key.path()}: generation {key.generation} is older than the stored "
                         f"generation {resident}; put with generation >= {resident} "
                         f"(a newer put already replaced this sample)")


def missing(key: FeatureKey, where: str, resident: int | None = None) -> KeyError:
    """The KeyError every store raises for a get it cannot serve; it names the key."""
    if resident is None:
        return KeyError(f"no features for {key.path()} in {where}: never put, deleted, or the store "
                        f"was closed")
    return KeyError(f"{key.path()} is stale in {where}: the store holds generation {resident} of "
                    f"sample {key.sample_id!r}; use the record returned by its latest put")
