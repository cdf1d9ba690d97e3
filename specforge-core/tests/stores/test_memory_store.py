"""The ``memory`` store passes the store kit, plus what only an in-process store promises."""

from __future__ import annotations

import pytest
import torch

from specforge.contracts import FeatureKey
from specforge.stores.memory import MemoryStore
from specforge.stores.options import MemoryStoreOptions
from specforge.testing.store_kit import StoreKit


class TestMemoryStoreKit(StoreKit):
    store_name = "memory"


def test_a_put_over_max_resident_bytes_raises_memoryerror_and_stores_nothing():
    store = MemoryStore(MemoryStoreOptions(max_resident_bytes=100), namespace="f")
    store.put(FeatureKey("f", "a"), {"x": torch.zeros(20)})  # 80 bytes
    with pytest.raises(MemoryError, match="max_resident_bytes=100"):
        store.put(FeatureKey("f", "b"), {"x": torch.zeros(10)})  # 40 more
    assert store.exists(FeatureKey("f", "b")) is False
    assert store.health().resident_bytes == 80


def test_a_reput_counts_only_the_new_generation_against_the_budget():
    store = MemoryStore(MemoryStoreOptions(max_resident_bytes=100), namespace="f")
    store.put(FeatureKey("f", "a", 0), {"x": torch.zeros(20)})
    store.put(FeatureKey("f", "a", 1), {"x": torch.zeros(25)})  # replaces: 100 bytes, not 180
    assert store.health().resident_bytes == 100


def test_a_put_older_than_the_stored_generation_is_refused():
    store = MemoryStore(namespace="f")
    store.put(FeatureKey("f", "a", 2), {"x": torch.ones(2)})
    with pytest.raises(ValueError, match="older than the stored generation 2"):
        store.put(FeatureKey("f", "a", 1), {"x": torch.zeros(2)})
    assert torch.equal(store.get(store.records()[0])["x"], torch.ones(2))


def test_a_key_of_another_namespace_is_refused_with_the_fix():
    store = MemoryStore(namespace="features")
    with pytest.raises(ValueError, match="namespace='other'"):
        store.put(FeatureKey("other", "a"), {"x": torch.ones(1)})


def test_records_lists_resident_samples_in_first_put_order():
    store = MemoryStore(namespace="f")
    for sid in ("c", "a", "b"):
        store.put(FeatureKey("f", sid), {"x": torch.ones(1)})
    store.put(FeatureKey("f", "c", 1), {"x": torch.ones(1)})
    store.delete(store.records()[1])
    assert [(r.key.sample_id, r.key.generation) for r in store.records()] == [("c", 1), ("b", 0)]


def test_a_closed_store_refuses_puts_and_cannot_be_reopened():
    store = MemoryStore(namespace="f")
    descriptor = store.descriptor()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.put(FeatureKey("f", "a"), {"x": torch.ones(1)})
    with pytest.raises(ValueError, match="disk"):
        MemoryStore.from_descriptor(descriptor)
