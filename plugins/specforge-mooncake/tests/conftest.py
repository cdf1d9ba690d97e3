"""A real Mooncake master on 127.0.0.1 for the whole session, started and stopped by PID.

Stores are shared where a test allows it: a Mooncake client takes 1-2 s to disconnect (it
joins heartbeat threads that sleep 1 s, holding the GIL), so a fresh store per test would
make this directory take minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from specforge_mooncake.master import MasterProcess, pid_running
from specforge_mooncake.options import MooncakeStoreOptions
from specforge_mooncake.store import MooncakeStore

LEASE_TTL_MS = 500  # short, so a read lease expires within a test (Mooncake's own CI uses 500 too)
SEGMENT = 64 << 20


@pytest.fixture(scope="session")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MasterProcess]:
    log_path = tmp_path_factory.mktemp("mooncake") / "master.log"
    process = MasterProcess(lease_ttl_ms=LEASE_TTL_MS, log_path=log_path).start()
    pid = process.pid
    assert pid is not None and pid_running(pid)
    yield process
    process.stop()
    assert not pid_running(pid), f"the session's Mooncake master (pid {pid}) outlived its stop()"


@pytest.fixture(scope="session")
def owner_options(master: MasterProcess) -> Callable[..., MooncakeStoreOptions]:
    """Options of a segment owner (as a trainer is) connected to the session's master."""

    def make(**overrides: Any) -> MooncakeStoreOptions:
        return MooncakeStoreOptions(**{"master_address": master.address, "global_segment_size": SEGMENT,
                                       **overrides})

    return make


@pytest.fixture(scope="module")
def owner(owner_options: Callable[..., MooncakeStoreOptions]) -> Iterator[MooncakeStore]:
    """One segment-owning store per module; tests use their own sample ids."""
    store = MooncakeStore(owner_options(), namespace="t")
    yield store
    store.close()


@pytest.fixture(scope="module")
def raw(master: MasterProcess) -> Iterator[Any]:
    """An independent pure Mooncake client, to look at objects without the store's code."""
    from mooncake.store import MooncakeDistributedStore

    client = MooncakeDistributedStore()
    assert client.setup(local_hostname="127.0.0.1", metadata_server="P2PHANDSHAKE", global_segment_size=0,
                        local_buffer_size=16 << 20, protocol="tcp", rdma_devices="",
                        master_server_addr=master.address) == 0
    yield client
    client.close()
