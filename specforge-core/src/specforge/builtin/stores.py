"""Registrations of the core's own stores, through the same hooks as any plugin.

Nothing is registered before it works. Imports no torch: factories are strings.
"""

from __future__ import annotations

from collections.abc import Callable

from specforge.plugin import FeatureStoreSpec, hookimpl
from specforge.stores.options import DiskStoreOptions, MemoryStoreOptions


@hookimpl
def specforge_register_feature_stores(register: Callable[[FeatureStoreSpec], None]) -> None:
    register(FeatureStoreSpec(
        name="memory",
        summary="in-process dict; fastest, gone when the process ends (online runs, tests)",
        factory="specforge.stores.memory:MemoryStore",
        options=MemoryStoreOptions,
        cross_process=False,
        persistent=False,
    ))
    register(FeatureStoreSpec(
        name="disk",
        summary="one safetensors file per sample plus a manifest; reopened by any process or run",
        factory="specforge.stores.disk:DiskStore",
        options=DiskStoreOptions,
        cross_process=True,
        persistent=True,
    ))
