"""Reopen any registered store from its ``descriptor()``: how a second process finds the features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from specforge.contracts import FeatureStore


def open_store(descriptor: Mapping[str, Any]) -> FeatureStore:
    """The store a descriptor names, via its registered class's ``from_descriptor``.

    Raises PluginError (naming what to install) when the store's plugin is missing here.
    """
    from specforge.registry import get_registry

    name = descriptor.get("store") if isinstance(descriptor, Mapping) else None
    if not isinstance(name, str):
        raise ValueError(f"not a store descriptor (no 'store' name): {descriptor!r}")
    store_class = get_registry().get("feature_store", name).spec.load()
    return store_class.from_descriptor(descriptor)
