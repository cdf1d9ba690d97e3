"""The disaggregated control plane: small metadata on torch.distributed's TCPStore, never tensors.

Soft state only: everything in it can be rebuilt from the data plan and the trainers'
checkpoints. Keys:

- ``rec/<sample id>``: the FeatureRecord (JSON) of a captured sample, set by its producer;
- ``acked``: how many plan positions the trainers have acknowledged (the plan's prefix);
- ``trainer_incarnation``: bumped when trainers (re)start, so producers re-read ``acked``;
- ``producer_error``: the first producer failure, which stops the trainers instead of a hang;
- ``produced/<p>``: progress of producer p, for metrics.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta

from specforge.contracts import FeatureRecord
from specforge.errors import SpecforgeError


class ProducerFailed(SpecforgeError):
    """A producer reported an error; the trainers stop with it."""


def sample_id(epoch: int, index: int) -> str:
    """Deterministic id of plan item (epoch, sample index): the same in every process and restart."""
    return f"e{epoch}/{index}"


@dataclass
class ControlPlane:
    """A client (or the host) of the run's TCPStore."""

    host: str
    port: int
    is_host: bool = False
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        from torch.distributed import TCPStore

        from specforge.net import host_store

        self._socket = None
        if self.is_host:  # listen on exactly self.host (torch's own server would take every interface)
            self._store, self._socket = host_store(self.host, self.port, "the control plane", self.timeout_s)
            self.port = self._socket.getsockname()[1]
        else:
            self._store = TCPStore(self.host, self.port, is_master=False, wait_for_workers=False,
                                   timeout=timedelta(seconds=self.timeout_s), use_libuv=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------- records

    def publish(self, sid: str, record: FeatureRecord) -> None:
        self._store.set(f"rec/{sid}", json.dumps(record.to_json()))

    def published(self, sid: str) -> FeatureRecord | None:
        key = f"rec/{sid}"
        if not self._store.check([key]):
            return None
        return FeatureRecord.from_json(json.loads(self._store.get(key)))

    def wait_record(self, sid: str, poll_s: float = 0.01) -> tuple[FeatureRecord, float]:
        """Block until ``sid`` is published (or a producer failed); returns the record and the wait."""
        started = time.perf_counter()
        key = f"rec/{sid}"
        while not self._store.check([key]):
            self.raise_producer_error()
            if time.perf_counter() - started > self.timeout_s:
                raise SpecforgeError(f"waited {self.timeout_s:.0f} s for sample {sid} from the producers; are "
                                     f"they running and pointed at coordinator {self.address}?")
            time.sleep(poll_s)
        return FeatureRecord.from_json(json.loads(self._store.get(key))), time.perf_counter() - started

    # ------------------------------------------------------------- progress

    def acked(self) -> int:
        return self._store.add("acked", 0)

    def ack(self, count: int) -> int:
        return self._store.add("acked", count)

    def rewind(self, acked: int) -> None:
        """Trainers (re)start from a checkpoint: what they acknowledged is exactly ``acked``."""
        self._store.set("acked", str(acked))
        self._store.add("trainer_incarnation", 1)

    def incarnation(self) -> int:
        return self._store.add("trainer_incarnation", 0)

    def count_produced(self, producer: int, n: int = 1) -> int:
        return self._store.add(f"produced/{producer}", n)

    # ------------------------------------------------------------- failure and shutdown

    def fail(self, message: str) -> None:
        if not self._store.check(["producer_error"]):
            self._store.set("producer_error", message)

    def raise_producer_error(self) -> None:
        if self._store.check(["producer_error"]):
            raise ProducerFailed(f"a producer failed: {self._store.get('producer_error').decode()}")

    def finish(self) -> None:
        self._store.set("trainers_done", "1")

    def trainers_done(self) -> bool:
        return self._store.check(["trainers_done"])
