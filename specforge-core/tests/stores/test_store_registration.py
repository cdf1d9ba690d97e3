"""The built-in stores are registered like any plugin's, without importing torch, and reopen by name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from specforge.contracts import FeatureKey
from specforge.errors import PluginError
from specforge.registry import get_registry
from specforge.stores.disk import DiskStore
from specforge.stores.options import DiskStoreOptions, MemoryStoreOptions
from specforge.stores.reopen import open_store


def test_memory_and_disk_are_registered_with_their_capabilities():
    registry = get_registry()
    memory = registry.get("feature_store", "memory").spec
    disk = registry.get("feature_store", "disk").spec
    assert (memory.options, memory.capabilities) == (MemoryStoreOptions, frozenset())
    assert (disk.options, disk.capabilities) == (DiskStoreOptions, frozenset({"cross_process", "persistent"}))
    assert memory.load().__name__ == "MemoryStore" and disk.load().__name__ == "DiskStore"


def test_registering_and_listing_stores_imports_no_torch():
    code = ("import sys; from specforge.registry import load_registry; "
            "import specforge.stores.disk, specforge.stores.memory, specforge.stores.reopen, specforge.testing; "
            "r = load_registry(); assert {'memory', 'disk'} <= set(r.names('feature_store')); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_open_store_reopens_a_disk_store_from_its_descriptor_json(tmp_path):
    writer = DiskStore(root=tmp_path, namespace="f")
    record = writer.put(FeatureKey("f", "a"), {"x": torch.arange(3)})
    reader = open_store(json.loads(json.dumps(writer.descriptor())))
    assert isinstance(reader, DiskStore) and reader is not writer
    assert torch.equal(reader.get(record)["x"], torch.arange(3))


def test_open_store_refuses_a_store_name_nobody_registered():
    with pytest.raises(PluginError, match="unknown feature store 'nonesuch'"):
        open_store({"store": "nonesuch"})
