"""The ``mooncake`` store: features as hard-pinned objects in a Mooncake distributed store.

Layout (``keys.py``): one object per tensor holding its raw contiguous bytes, no header (shape
and dtype come from the record), plus one small record object per sample written after its
tensors, so "the record object exists" means "the sample is complete". Transfers use the
zero-copy batch calls (``batch_upsert_from`` / ``batch_get_into``) on buffers registered for
the call: a put sends the caller's tensors as they are (a copy only for non-contiguous ones),
a get reads straight into the tensors it returns.

Decisions, each for a Mooncake behaviour observed with mooncake-transfer-engine 0.3.13:
- Puts are upserts: Mooncake's ``put`` of an existing key keeps the old bytes, and a crashed
  writer can leave objects of the generation its restart writes again.
- A put of generation g removes the sample's older generations (any writer's) once g is
  complete; a stale record then reads as a KeyError, never as old bytes.
- A read grants a read lease that makes ``remove`` fail with -706. ``delete`` is called when
  the application knows it is done with the sample, so it retries leased objects with backoff
  for ``delete_wait_s`` and then removes them with ``force=True``: callers never see -706.
- Objects live in segment-owner memory (``global_segment_size > 0``) and vanish when that owner
  closes; a pure client's writes survive the client. ``persistent`` is therefore False.
- Writes go first to one segment: a segment owner's own (a local copy instead of a network
  transfer), and for a client attached from a descriptor, the segment of the store that wrote
  the descriptor. So which process's memory holds the features is decided, not random.
- A short read is a KeyError: the store never returns bytes it did not fully receive.
- Every listener (managed master, this process's transfer-engine RPC and TCP ports) binds the
  listen address, loopback unless the user names another (``listeners.py``); Mooncake's client
  cannot be told so, so its wildcard binds are rewritten while it starts (``bind_guard.py``) and
  its listeners are checked afterwards: one elsewhere is a ``MooncakeExposedError``.

``health()`` counts the samples put through this store object and not deleted (Mooncake has
no listing), and asks the master whether it answers (``health_check``).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import signal
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from specforge.api import FeatureKey, FeatureRecord, StoreHealth
from specforge.api.net import describe
from specforge.api.stores import (
    StoreBase,
    check_key,
    check_put_generation,
    check_record,
    from_store,
    missing,
    select_names,
    spec_bytes,
    specs_of,
    stored_dtype,
    to_store,
    torch_dtype,
)
from specforge_mooncake import bind_guard
from specforge_mooncake.errors import (
    INVALID_PARAMS,
    NO_AVAILABLE_HANDLE,
    OBJECT_HAS_LEASE,
    OBJECT_NOT_FOUND,
    MooncakeExposedError,
    MooncakeMasterError,
    MooncakeStoreError,
    code_name,
)
from specforge_mooncake.keys import older_generations, record_blob, record_key, tensor_key
from specforge_mooncake.listeners import advertised, bind_address, own_listeners, stray
from specforge_mooncake.master import MasterProcess, port_open
from specforge_mooncake.native import mooncake_store
from specforge_mooncake.options import MooncakeStoreOptions, host_part

log = logging.getLogger(__name__)

LOCAL_HOSTNAME_ENV = "SPECFORGE_MOONCAKE_LOCAL_HOSTNAME"
"""Overrides ``local_hostname`` when a process attaches from a descriptor written on another machine."""
LISTEN_HOST_ENV = "SPECFORGE_MOONCAKE_LISTEN_HOST"
"""Overrides ``listen_host`` for such a process (default: the address it names as its own)."""

_BLOB_CAPACITY = 4096  # bytes read for a record object; larger ones are re-read at their size
_OPEN: weakref.WeakSet[MooncakeStore] = weakref.WeakSet()


def _close_open_stores() -> None:
    """At exit: close clients before their masters stop (a client of a dead master hangs ~5 s)."""
    for store in list(_OPEN):
        with contextlib.suppress(Exception):
            store.close()


atexit.register(_close_open_stores)  # after master.py's own hook (imported above), so it runs first
os.register_at_fork(after_in_child=_OPEN.clear)  # a forked child closes none of its parent's clients


@contextlib.contextmanager
def _signals_kept_for_python() -> Iterator[None]:
    """Block SIGINT/SIGTERM/SIGHUP while Mooncake starts its threads, which inherit the mask.

    Otherwise the kernel may deliver Ctrl-C to one of them: Python then only notes the signal,
    and a main thread waiting in a long sleep or join never hears of it.
    """
    stop = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def attach_options(descriptor: Mapping[str, Any], *, global_segment_size: int = 0, local_hostname: str | None = None,
                   listen_host: str | None = None) -> MooncakeStoreOptions:
    """The options of a client attaching from ``descriptor`` (which may come from another machine).

    ``local_hostname`` defaults to ``$SPECFORGE_MOONCAKE_LOCAL_HOSTNAME``, then the
    descriptor's; ``listen_host`` to ``$SPECFORGE_MOONCAKE_LISTEN_HOST``, then, when this
    process names its own address, to that address (the descriptor's listen host is the
    writer machine's), else the descriptor's.
    """
    if descriptor.get("store") != "mooncake":
        raise ValueError(f"not a mooncake-store descriptor: {dict(descriptor)!r}")
    options = MooncakeStoreOptions(**descriptor.get("options", {}))
    local = local_hostname or os.environ.get(LOCAL_HOSTNAME_ENV)
    listen = listen_host if listen_host is not None else os.environ.get(LISTEN_HOST_ENV)
    if listen is None:
        listen = "" if local else options.listen_host
    return dataclasses.replace(options, master_address=descriptor["master_address"],
                               global_segment_size=global_segment_size,
                               local_hostname=local or options.local_hostname, listen_host=listen)


class MooncakeStore(StoreBase):
    """Features in a Mooncake pool that other processes and machines reach through the master."""

    cross_process = True
    persistent = False

    def __init__(self, options: MooncakeStoreOptions | None = None, *, root: Path | None = None,
                 namespace: str = "features") -> None:
        super().__init__(namespace)
        self.options = options or MooncakeStoreOptions()
        self.master: MasterProcess | None = None
        self._lock = threading.Lock()
        self._resident: dict[str, FeatureRecord] = {}  # sample_id -> what this object put, not deleted
        self._bytes = 0
        self._temp_log: Path | None = None
        native = mooncake_store()  # the install error, before any process is started
        self._replicate = native.ReplicateConfig()
        self._replicate.replica_num = 1
        self._replicate.with_hard_pin = True  # never evicted: only delete (or the owner closing) frees it
        self.listen_address = bind_address(self.options)  # None: every interface, as the user asked
        try:
            if self.options.managed:
                self.master = MasterProcess(host=self.listen_address or "0.0.0.0",
                                            lease_ttl_ms=self.options.lease_ttl_ms, log_path=self._log_path(root))
                self.master.start(timeout_s=max(self.options.connect_timeout_s, 30.0))
                self.master_address = f"{host_part(self.options.local_hostname)}:{self.master.rpc_port}"
            else:
                self.master_address = self.options.master_address
            self._client = self._connect(native)
            self.segment = self._client.get_hostname() if self.options.segment_owner else ""
            self._replicate.preferred_segment = self.options.preferred_segment or self.segment
        except BaseException:
            if self.master is not None:
                self.master.stop()
            raise
        _OPEN.add(self)

    # ------------------------------------------------------------------ opening

    def _log_path(self, root: Path | None) -> Path:
        if root is not None:
            return Path(root) / "mooncake-master.log"
        self._temp_log = Path(tempfile.gettempdir()) / f"specforge-mooncake-master-{uuid.uuid4().hex[:12]}.log"
        return self._temp_log

    def _connect(self, native: Any) -> Any:
        opts = self.options
        host, _, port = self.master_address.rpartition(":")
        deadline = time.monotonic() + opts.connect_timeout_s
        while not port_open(host, int(port), timeout_s=1.0):  # Mooncake's own setup retries for ~90 s
            if time.monotonic() > deadline:
                raise MooncakeMasterError(
                    f"no Mooncake master answers at {self.master_address} (waited {opts.connect_timeout_s:.0f} s); "
                    f"start one with `specforge mooncake master --host HOST --rpc-port PORT`, fix "
                    f"store.master_address, or set it to \"\" for a master managed by this run")
            time.sleep(0.1)
        before = own_listeners()
        with _signals_kept_for_python(), bind_guard.confine(self.listen_address), \
                advertised(opts, self.listen_address):
            client = native.MooncakeDistributedStore()
            rc = client.setup(local_hostname=opts.local_hostname, metadata_server=opts.metadata_server,
                              global_segment_size=opts.global_segment_size, local_buffer_size=opts.local_buffer_size,
                              protocol=opts.protocol, rdma_devices=opts.rdma_devices,
                              master_server_addr=self.master_address)
        if rc != 0:
            raise MooncakeStoreError(
                f"connecting to the Mooncake master {self.master_address} failed ({code_name(rc)}); check "
                f"store.local_hostname={opts.local_hostname!r} (this machine's address as the others reach it), "
                f"store.listen_host={opts.listen_host!r} (an address of this machine, \"\" for local_hostname's), "
                f"store.metadata_server={opts.metadata_server!r} and store.protocol={opts.protocol!r} "
                f"(rdma needs RDMA NICs; use tcp otherwise)")
        opened = [s for inode, s in own_listeners().items() if inode not in before]
        wrong = stray(opened, self.listen_address)
        if wrong:
            with contextlib.suppress(Exception):
                client.close()
            raise MooncakeExposedError(
                f"Mooncake's client opened {describe(wrong)}, not on {self.listen_address} as store.listen_host / "
                f"store.local_hostname ask; refusing to run with features exposed. This Mooncake build escapes "
                f"the bind rewrite (see the specforge-mooncake README); set store.listen_host=0.0.0.0 only if "
                f"every interface may be reached")
        log.info("mooncake client of %s listens on %s", self.master_address, describe(opened))
        return client

    def descriptor(self) -> dict:
        """Where the master is (a managed master's too), how to connect, and where to write; JSON."""
        options = dataclasses.replace(self.options, master_address=self.master_address,
                                      preferred_segment=self._replicate.preferred_segment)
        return {"store": "mooncake", "namespace": self.namespace, "master_address": self.master_address,
                "segment": self.segment, "options": dataclasses.asdict(options)}

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> MooncakeStore:
        """Attach to the descriptor's master as a pure client (see ``attach``)."""
        return cls.attach(descriptor)

    @classmethod
    def attach(cls, descriptor: Mapping[str, Any], *, global_segment_size: int = 0,
               local_hostname: str | None = None, listen_host: str | None = None) -> MooncakeStore:
        """A new client of the descriptor's master; it never starts or stops that master.

        By default a pure client (``global_segment_size=0``): its writes land in the segment
        owners' memory (the descriptor writer's first) and outlive it, which is what a producer
        needs. See ``attach_options`` for its addresses.
        """
        options = attach_options(descriptor, global_segment_size=global_segment_size,
                                 local_hostname=local_hostname, listen_host=listen_host)
        return cls(options, namespace=descriptor["namespace"])

    # ------------------------------------------------------------------ data path

    def put(self, key: FeatureKey, tensors: Mapping[str, Any]) -> FeatureRecord:
        return self.put_many([(key, tensors)])[0]

    def put_many(self, items: Iterable[tuple[FeatureKey, Mapping[str, Any]]]) -> list[FeatureRecord]:
        """All tensors in one batch, then all record objects in a second: a sample is visible only
        once its bytes are in. Then the older generations of each sample are removed."""
        import torch

        self._check_open()
        batch: list[tuple[FeatureRecord, dict[str, Any]]] = []
        seen: set[str] = set()
        for key, tensors in items:
            check_key(key, self.namespace)
            if key.sample_id in seen:
                raise ValueError(f"put_many: sample {key.sample_id!r} appears twice; put one generation")
            seen.add(key.sample_id)
            specs = specs_of(key, tensors)
            with self._lock:
                previous = self._resident.get(key.sample_id)
            check_put_generation(key, previous.key.generation if previous else None)
            staged = {name: to_store(t.detach().to("cpu"), self.options.dtype, key.path()).contiguous()
                      for name, t in tensors.items()}  # views stay views
            batch.append((FeatureRecord(key=key, specs=specs), staged))
        if not batch:
            return []
        data_keys = [self._data_key(r, n) for r, staged in batch for n, t in staged.items() if t.numel()]
        data = [t for _, staged in batch for t in staged.values() if t.numel()]
        meta_keys = [record_key(r.key) for r, _ in batch]
        blobs = [torch.frombuffer(bytearray(record_blob(r)), dtype=torch.uint8) for r, _ in batch]
        try:
            self._write(data_keys, data)
            self._write(meta_keys, blobs)
        except BaseException:
            with contextlib.suppress(Exception):  # nothing half-written may stay pinned
                self._client.batch_remove(meta_keys + data_keys, True)
            raise
        for record, _ in batch:
            self._drop_replaced(record)
        return [record for record, _ in batch]

    def get(self, record: FeatureRecord, names: Iterable[str] | None = None) -> dict:
        return self.get_many([record], names)[0]

    def get_many(self, records: Iterable[FeatureRecord], names: Iterable[str] | None = None) -> list[dict]:
        """One ``batch_get_into`` for every record object and tensor, straight into the results."""
        import torch

        self._check_open()
        names = None if names is None else ([names] if isinstance(names, str) else list(names))
        wanted: list[tuple[FeatureRecord, dict[str, Any], Any]] = []  # record, {name: out tensor}, blob buffer
        reads: dict[str, Any] = {}  # key -> buffer; a key read twice in one batch gets garbage (verified)
        for record in records:
            check_record(record, self.namespace)
            chosen = select_names(record, names)
            blob = torch.empty(max(2 * len(record_blob(record)), _BLOB_CAPACITY), dtype=torch.uint8)
            reads.setdefault(record_key(record.key), blob)
            out = {}
            for name in chosen:
                spec = record.specs[name]
                kept = stored_dtype(spec.dtype, self.options.dtype)
                out[name] = torch.empty(spec.shape, dtype=torch_dtype(kept))  # [*spec.shape], as stored
                if out[name].numel():
                    reads.setdefault(self._data_key(record, name), out[name])
            wanted.append((record, out, blob))
        keys = list(reads)
        with self._registered(list(reads.values()), copy_on_overlap=False) as buffers:
            codes = dict(zip(keys, self._client.batch_get_into(keys, [b.data_ptr() for b in buffers],
                                                               [b.nbytes for b in buffers])))
        results = []
        for record, out, _blob in wanted:
            mkey = record_key(record.key)
            self._check_record_object(record, out, reads[mkey], codes[mkey])
            for name, tensor in out.items():
                if not tensor.numel():
                    continue
                tkey = self._data_key(record, name)
                self._check_read(record, name, codes[tkey], tensor.nbytes)
                if reads[tkey] is not tensor:  # the same sample twice in this batch
                    tensor.copy_(reads[tkey])
            results.append({name: from_store(t, record.specs[name].dtype) for name, t in out.items()})
        return results

    def delete(self, record: FeatureRecord) -> None:
        """Free a sample (its generation only); a no-op when already gone. Respects read leases for
        ``delete_wait_s``, then forces: the caller says no reader needs the sample any more."""
        check_record(record, self.namespace)
        self._check_open()
        key = record.key
        self._remove([record_key(key)] + [self._data_key(record, n) for n, s in record.specs.items() if s.numel])
        with self._lock:
            resident = self._resident.get(key.sample_id)
            if resident is not None and resident.key.generation == key.generation:
                del self._resident[key.sample_id]
                self._bytes -= self._stored_bytes(resident)

    def exists(self, key: FeatureKey) -> bool:
        """Whether the sample's generation is complete in the pool (written by any process)."""
        check_key(key, self.namespace)
        self._check_open()
        rc = self._client.is_exist(record_key(key))
        if rc < 0:
            raise MooncakeStoreError(f"is_exist({record_key(key)}) failed ({code_name(rc)}); is the master "
                                     f"{self.master_address} still running?")
        return rc == 1

    def health(self) -> StoreHealth:
        code = 1 if self._closed else self._client.health_check()  # 0 ok, 1 closed, 2 master unreachable
        with self._lock:
            samples, nbytes = len(self._resident), self._bytes
        return StoreHealth(
            ok=code == 0, resident_samples=samples, resident_bytes=nbytes,
            detail={"master_address": self.master_address, "health_check": code,
                    "managed_master_pid": self.master.pid if self.master else None, "namespace": self.namespace,
                    "segment_owner": self.options.segment_owner, "segment": self.segment,
                    "preferred_segment": self._replicate.preferred_segment,
                    "global_segment_size": self.options.global_segment_size, "protocol": self.options.protocol,
                    "counts": "samples put through this store object and not deleted"})

    def close(self) -> None:
        """Disconnect (a segment owner's objects vanish with its segment), then stop a managed master."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._resident.clear()
            self._bytes = 0
        _OPEN.discard(self)
        try:
            self._client.close()
        finally:
            if self.master is not None:
                self.master.stop()
            if self._temp_log is not None:
                self._temp_log.unlink(missing_ok=True)

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _registered(self, tensors: Sequence[Any], *, copy_on_overlap: bool) -> Iterator[list[Any]]:
        """Register each tensor's memory for this call (RDMA needs it); yields the tensors to use.

        Mooncake refuses overlapping registrations (one caller tensor put twice at once, two
        views of one buffer): with ``copy_on_overlap`` such a tensor is sent from a fresh copy.
        """
        done: list[int] = []
        used: list[Any] = []
        try:
            for tensor in tensors:
                if self._client.register_buffer(tensor.data_ptr(), tensor.nbytes) != 0:
                    if not copy_on_overlap:
                        raise MooncakeStoreError(f"cannot register a {tensor.nbytes}-byte buffer with Mooncake")
                    tensor = tensor.clone()  # noqa: PLW2901 - fresh memory overlaps no registration
                    if self._client.register_buffer(tensor.data_ptr(), tensor.nbytes) != 0:
                        raise MooncakeStoreError(f"cannot register a {tensor.nbytes}-byte buffer with Mooncake")
                done.append(tensor.data_ptr())
                used.append(tensor)
            yield used
        finally:
            for ptr in done:
                self._client.unregister_buffer(ptr)

    def _write(self, keys: list[str], tensors: list[Any]) -> None:
        if not keys:
            return
        with self._registered(tensors, copy_on_overlap=True) as buffers:
            codes = self._client.batch_upsert_from(keys, [b.data_ptr() for b in buffers], [b.nbytes for b in buffers],
                                                   self._replicate)
        failed = [(k, c) for k, c in zip(keys, codes) if c != 0]
        if not failed:
            return
        key, code = failed[0]
        if code == NO_AVAILABLE_HANDLE:
            raise MooncakeStoreError(
                f"no free memory in the Mooncake pool for {key} ({len(failed)} object(s) failed): raise "
                f"global_segment_size of the segment owner(s), delete consumed samples, or make sure a process "
                f"with global_segment_size > 0 is connected (a pure client only writes into others' memory)")
        raise MooncakeStoreError(f"put of {key} failed ({code_name(code)}; {len(failed)} object(s) failed)")

    def _drop_replaced(self, record: FeatureRecord) -> None:
        """Remove what ``record`` replaces: older generations, and same-generation names it lacks."""
        key = record.key
        with self._lock:
            previous = self._resident.get(key.sample_id)
            self._resident[key.sample_id] = record
            self._bytes += self._stored_bytes(record) - (self._stored_bytes(previous) if previous else 0)
        if key.generation > 0:
            # Any writer's older generations; forced, because the new generation makes them garbage.
            self._client.remove_by_regex(older_generations(key), True)
        if previous is not None and previous.key.generation == key.generation:
            stale = [self._data_key(previous, n) for n, s in previous.specs.items()
                     if n not in record.specs and spec_bytes(s)]
            if stale:
                self._remove(stale)

    def _remove(self, keys: list[str]) -> None:
        """Remove objects; leased ones are retried with backoff, then forced after ``delete_wait_s``."""
        deadline = time.monotonic() + self.options.delete_wait_s
        pause = 0.005
        pending, force = keys, False
        while pending:
            codes = self._client.batch_remove(pending, force)
            failed = [(k, c) for k, c in zip(pending, codes) if c not in (0, OBJECT_NOT_FOUND, OBJECT_HAS_LEASE)]
            if failed:
                raise MooncakeStoreError(f"remove of {failed[0][0]} failed ({code_name(failed[0][1])})")
            leased = [k for k, c in zip(pending, codes) if c == OBJECT_HAS_LEASE]
            if leased and force:
                raise MooncakeStoreError(f"remove(force=True) of {leased[0]} still reported a lease")
            pending = leased
            if pending:
                left = deadline - time.monotonic()
                force = left <= 0
                if not force:
                    log.debug("%d object(s) read-leased; retrying remove in %.3f s", len(pending), min(pause, left))
                    time.sleep(min(pause, left))
                    pause *= 2

    def _check_record_object(self, record: FeatureRecord, out: Mapping[str, Any], blob: Any, code: int) -> None:
        """The stored record must be this record (generation included) for every name read."""
        key = record_key(record.key)
        if code == OBJECT_NOT_FOUND:
            raise missing(record.key, f"the Mooncake store at {self.master_address}")
        if code == INVALID_PARAMS:  # larger than the buffer: read it at its real size
            size = self._client.get_size(key)
            if size < 0:
                raise missing(record.key, f"the Mooncake store at {self.master_address}")
            blob = bytearray(self._client.get(key))
            code = len(blob)
        if code < 0:
            raise MooncakeStoreError(f"get of {key} failed ({code_name(code)})")
        try:
            stored = FeatureRecord.from_json(json.loads(bytes(blob[:code])))
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyError(f"{record.key.path()}: the record object {key} is unreadable ({exc}); the sample was "
                           f"being rewritten or deleted, read it again") from None
        for name in out:
            if stored.key != record.key or stored.specs.get(name) != record.specs[name]:
                raise ValueError(f"{record.key.path()}: record says {name!r} is {record.specs[name]}, but the store "
                                 f"holds {stored.specs.get(name)}; the sample was re-put with other tensors, use "
                                 f"the record its latest put returned")

    def _data_key(self, record: FeatureRecord, name: str) -> str:
        """A tensor's object key; kept in another dtype (``store.dtype``) the dtype is part of it, so a
        reader expecting other bytes finds nothing instead of misreading them."""
        logical = record.specs[name].dtype
        kept = stored_dtype(logical, self.options.dtype)
        key = tensor_key(record.key, name)
        return key if kept == logical else f"{key}~{kept}"

    def _stored_bytes(self, record: FeatureRecord) -> int:
        return sum(spec_bytes(dataclasses.replace(s, dtype=stored_dtype(s.dtype, self.options.dtype)))
                   for s in record.specs.values())

    def _check_read(self, record: FeatureRecord, name: str, code: int, nbytes: int) -> None:
        if code == nbytes:
            return
        where = f"the Mooncake store at {self.master_address}"
        if code == OBJECT_NOT_FOUND:
            raise missing(record.key, where)
        if code >= 0 or code == INVALID_PARAMS:  # short, or longer than the record says: never serve it
            raise KeyError(f"{record.key.path()}: read {code} bytes of {name!r} from {where}, expected {nbytes}; "
                           f"the sample is being rewritten or deleted")
        raise MooncakeStoreError(f"get of {tensor_key(record.key, name)} failed ({code_name(code)})")

