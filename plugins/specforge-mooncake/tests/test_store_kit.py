"""The ``mooncake`` store passes the core's store conformance kit against a real master."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from specforge.testing.store_kit import StoreKit
from specforge_mooncake.store import MooncakeStore

pytestmark = pytest.mark.mooncake


class TestMooncakeStoreKit(StoreKit):
    store_name = "mooncake"
    _open: ClassVar[list[MooncakeStore]] = []

    @pytest.fixture
    def store(self, tmp_path: Path, owner_options) -> Iterator[MooncakeStore]:
        # A segment owner, as a trainer is: its objects vanish when it closes (the kit checks that).
        # Unlike the kit's own fixture, one store serves test after test until a test closes it;
        # between tests it deletes everything it put, so each test starts from an empty store.
        # (A Mooncake client needs 1-2 s to disconnect: a store per test would take a minute.)
        if not self._open or self._open[-1].health().detail["health_check"] != 0:
            self._open.append(MooncakeStore(owner_options(), root=tmp_path / "store", namespace=self.namespace))
        store = self._open[-1]
        yield store
        if store.health().detail["health_check"] == 0:
            for record in list(store._resident.values()):
                store.delete(record)

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _close_at_the_end(cls) -> Iterator[None]:
        yield
        for store in cls._open:
            store.close()
