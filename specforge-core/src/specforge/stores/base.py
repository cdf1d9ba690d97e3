"""Behaviour the built-in stores share: batch forms, close state, context manager, key helper."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from specforge.contracts import FeatureKey, FeatureRecord
from specforge.stores.validation import check_namespace


class StoreBase:
    """Mix-in for stores whose batch forms are loops over ``put`` / ``get``."""

    cross_process: bool = False
    persistent: bool = False

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self._closed = False

    # Subclasses implement these (FeatureStore protocol).
    def put(self, key: FeatureKey, tensors: Mapping[str, Any]) -> FeatureRecord:
        raise NotImplementedError

    def get(self, record: FeatureRecord, names: Iterable[str] | None = None) -> dict:
        raise NotImplementedError

    def key(self, sample_id: str, generation: int = 0) -> FeatureKey:
        """A key in this store's namespace."""
        return FeatureKey(self.namespace, sample_id, generation)

    def put_many(self, items: Iterable[tuple[FeatureKey, Mapping[str, Any]]]) -> list[FeatureRecord]:
        """``put`` each ``(key, tensors)``; records in the same order."""
        return [self.put(key, tensors) for key, tensors in items]

    def get_many(self, records: Iterable[FeatureRecord], names: Iterable[str] | None = None) -> list[dict]:
        """``get`` each record; one dict per record, in order."""
        names = None if names is None else list(names)
        return [self.get(record, names) for record in records]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} {self.namespace!r} is closed; reopen it from its "
                               f"descriptor() to use it again")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
