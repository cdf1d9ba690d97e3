"""The ``memory`` store: an in-process dict, for the online topology and tests.

Copies, decided once: ``put`` copies each tensor into a fresh contiguous CPU tensor the store
owns (so a caller reusing its buffer, or a slice of a whole batch, cannot change or pin what
is stored), and ``get`` returns clones (so a caller writing into a result cannot corrupt the
store or another reader). That is one memcpy per put and per get, the same traffic a disk
read costs and small next to the target forward that produced the features. Stored tensors
are never written in place, which is why ``get`` may clone them outside the lock. With
``store.dtype`` bfloat16/float16, floating tensors are kept in that dtype (half the memory of
float32) and ``get`` converts them back to the dtype they were put in.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import FeatureKey, FeatureRecord, StoreHealth
from specforge.stores.base import StoreBase
from specforge.stores.dtypes import from_store, stored_dtype, to_store, torch_dtype
from specforge.stores.options import MemoryStoreOptions
from specforge.stores.validation import check_key, check_put_generation, check_record, missing, select_names, specs_of

_LIVE: weakref.WeakValueDictionary[str, MemoryStore] = weakref.WeakValueDictionary()
"""Open memory stores of this process by id, so ``from_descriptor`` can find them again."""


@dataclass(frozen=True)
class _Resident:
    record: FeatureRecord
    tensors: Mapping[str, Any]  # name -> store-owned contiguous CPU tensor, never mutated
    nbytes: int


class MemoryStore(StoreBase):
    """Features in this process's memory; gone when the store is closed or the process ends."""

    cross_process = False
    persistent = False

    def __init__(self, options: MemoryStoreOptions | None = None, *, root: Path | None = None,
                 namespace: str = "features") -> None:
        super().__init__(namespace)
        self.options = options or MemoryStoreOptions()
        self.store_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._samples: dict[str, _Resident] = {}  # sample_id -> current generation only
        self._bytes = 0
        _LIVE[self.store_id] = self

    # ------------------------------------------------------------------ opening

    def descriptor(self) -> dict:
        return {"store": "memory", "store_id": self.store_id, "namespace": self.namespace,
                "options": dataclasses.asdict(self.options)}

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> MemoryStore:
        """The same open store, when asked from the process that holds it."""
        if descriptor.get("store") != "memory":
            raise ValueError(f"not a memory-store descriptor: {dict(descriptor)!r}")
        store = _LIVE.get(descriptor.get("store_id", ""))
        if store is None or store._closed:
            raise ValueError(
                "the memory store of this descriptor is not open in this process: a memory store lives "
                "in one process and ends with it; use the 'disk' store to share features between "
                "processes or keep them after a run")
        return store

    # ------------------------------------------------------------------ data path

    def put(self, key: FeatureKey, tensors: Mapping[str, Any]) -> FeatureRecord:
        import torch

        self._check_open()
        check_key(key, self.namespace)
        specs = specs_of(key, tensors)
        owned = {}
        for name, tensor in tensors.items():
            kept = stored_dtype(specs[name].dtype, self.options.dtype)
            copy = torch.empty(specs[name].shape, dtype=torch_dtype(kept))  # [*shape] on CPU
            copy.copy_(to_store(tensor.detach(), self.options.dtype, key.path()))
            owned[name] = copy
        record = FeatureRecord(key=key, specs=specs)
        entry = _Resident(record, owned, sum(t.nbytes for t in owned.values()))
        with self._lock:
            self._check_open()
            previous = self._samples.get(key.sample_id)
            check_put_generation(key, previous.record.key.generation if previous else None)
            total = self._bytes - (previous.nbytes if previous else 0) + entry.nbytes
            limit = self.options.max_resident_bytes
            if limit and total > limit:
                raise MemoryError(
                    f"put {key.path()}: {entry.nbytes} bytes would bring the memory store to {total} bytes, "
                    f"over max_resident_bytes={limit}; delete consumed samples first or raise "
                    f"store.max_resident_bytes")
            self._samples[key.sample_id] = entry
            self._bytes = total
        return record

    def get(self, record: FeatureRecord, names: Iterable[str] | None = None) -> dict:
        check_record(record, self.namespace)
        chosen = select_names(record, names)
        with self._lock:
            self._check_open()
            entry = self._samples.get(record.key.sample_id)
            if entry is None:
                raise missing(record.key, "the memory store")
            if entry.record.key.generation != record.key.generation:
                raise missing(record.key, "the memory store", entry.record.key.generation)
        for name in chosen:
            if record.specs[name] != entry.record.specs[name]:
                raise ValueError(f"{record.key.path()}: record says {name!r} is {record.specs[name]}, "
                                 f"but the store holds {entry.record.specs[name]}; the record was not "
                                 f"returned by this store's put")
        out = {}
        for name in chosen:
            restored = from_store(entry.tensors[name], record.specs[name].dtype)
            out[name] = restored.clone() if restored is entry.tensors[name] else restored
        return out

    def delete(self, record: FeatureRecord) -> None:
        """Free a sample; a no-op when it is already gone or ``record`` is of an older generation."""
        check_record(record, self.namespace)
        with self._lock:
            entry = self._samples.get(record.key.sample_id)
            if entry is not None and entry.record.key.generation == record.key.generation:
                del self._samples[record.key.sample_id]
                self._bytes -= entry.nbytes

    def exists(self, key: FeatureKey) -> bool:
        check_key(key, self.namespace)
        with self._lock:
            entry = self._samples.get(key.sample_id)
            return entry is not None and entry.record.key.generation == key.generation

    def records(self) -> list[FeatureRecord]:
        """Every resident record, in the order its sample was first put."""
        with self._lock:
            return [entry.record for entry in self._samples.values()]

    def health(self) -> StoreHealth:
        with self._lock:
            return StoreHealth(ok=not self._closed, resident_samples=len(self._samples),
                               resident_bytes=self._bytes,
                               detail={"store_id": self.store_id, "namespace": self.namespace,
                                       "max_resident_bytes": self.options.max_resident_bytes})

    def close(self) -> None:
        """Drop every sample; the store cannot be reopened afterwards."""
        with self._lock:
            self._samples.clear()
            self._bytes = 0
            self._closed = True
        _LIVE.pop(self.store_id, None)
