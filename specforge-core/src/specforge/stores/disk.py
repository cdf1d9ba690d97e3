"""The ``disk`` store: one safetensors file per sample, sharded into folders, plus a manifest.

Layout under ``root/<namespace>/``::

    store.json                              {"format": "specforge.disk-store", "version": 1}
    manifest.jsonl                          append-only journal of puts and deletes (manifest.py)
    000000/<file stem>.g<generation>.safetensors
    000001/...                              a new folder every ``shard_size`` samples

A file holds exactly the tensors put, unpadded (safetensors: 8-byte header length, JSON
header, raw little-endian data; no pickle anywhere), and the key in its metadata; with
``store.dtype`` bfloat16/float16 its floating tensors are kept in that dtype (named in the
metadata) and ``get`` returns them in the dtype they were put in. A put
writes a temporary file in the target folder, renames it into place (``os.replace``,
atomic), then appends its manifest line: a crash before the line leaves no visible record.
Readers, in this process or another one, find files through the manifest, never by
recomputing paths. One writer per sample id at a time; different ids may be written from
many processes at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from specforge.contracts import FeatureKey, FeatureRecord, StoreHealth
from specforge.errors import UserError
from specforge.stores.base import StoreBase
from specforge.stores.dtypes import from_store, stored_dtype, to_store
from specforge.stores.manifest import Manifest, ManifestEntry, delete_event, put_event
from specforge.stores.options import DiskStoreOptions
from specforge.stores.validation import check_key, check_put_generation, check_record, missing, select_names, specs_of

FORMAT = "specforge.disk-store"
VERSION = 1
MARKER = "store.json"
MANIFEST = "manifest.jsonl"
SUFFIX = ".safetensors"


def file_stem(sample_id: str) -> str:
    """A filesystem-safe, collision-free file name stem for a sample id.

    Percent-encodes everything but letters, digits, ``-_.``; ids with upper-case letters (which
    collide on case-insensitive filesystems) or long ids get a digest suffix instead.
    """
    quoted = urllib.parse.quote(sample_id, safe="-_.")
    if len(quoted) <= 120 and not any("A" <= c <= "Z" for c in sample_id):
        return quoted
    digest = hashlib.sha256(sample_id.encode()).hexdigest()[:16]
    return f"{quoted[:80].lower()}~{digest}"  # '~' never appears in quoted text (it is encoded)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DiskStore(StoreBase):
    """Features as safetensors files under a directory; any process can reopen it."""

    cross_process = True
    persistent = True

    def __init__(self, options: DiskStoreOptions | None = None, *, root: Path | None = None,
                 namespace: str = "features") -> None:
        super().__init__(namespace)
        self.options = options or DiskStoreOptions()
        if self.options.root:
            root = Path(self.options.root).expanduser()
        if root is None:
            raise ValueError("the disk store needs a root directory (root=...); the run passes its "
                             "output directory, or set [store] root in the config")
        self.root = Path(root).resolve()
        self.read_only = self.options.read_only
        self.dir = self.root / self.namespace
        self._lock = threading.Lock()
        if self.read_only and not (self.dir / MARKER).is_file():
            raise UserError(f"store.read_only is set but {self.dir} holds no disk store; capture into it first "
                            f"(specforge capture --output-dir {self.root}) or drop store.read_only")
        self._ensure_layout()
        self._manifest = Manifest(self.dir / MANIFEST, fsync=self.options.fsync)
        self._manifest.refresh()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open_existing(cls, root: Path | str, namespace: str = "features",
                      options: DiskStoreOptions | None = None) -> DiskStore:
        """Open a store another run or process wrote; FileNotFoundError when there is none."""
        marker = Path(root) / namespace / MARKER
        if not marker.is_file():
            raise FileNotFoundError(f"no disk store at {marker.parent} (missing {MARKER}); write one first "
                                    f"(e.g. specforge capture) or check the root and namespace")
        return cls(options, root=Path(root), namespace=namespace)

    def descriptor(self) -> dict:
        return {"store": "disk", "root": str(self.root), "namespace": self.namespace,
                "options": dataclasses.asdict(self.options)}

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> DiskStore:
        if descriptor.get("store") != "disk":
            raise ValueError(f"not a disk-store descriptor: {dict(descriptor)!r}")
        options = DiskStoreOptions(**descriptor.get("options", {}))
        return cls.open_existing(descriptor["root"], descriptor["namespace"], options)

    # ------------------------------------------------------------------ data path

    def put(self, key: FeatureKey, tensors: Mapping[str, Any]) -> FeatureRecord:
        return self.put_many([(key, tensors)])[0]

    def put_many(self, items: Iterable[tuple[FeatureKey, Mapping[str, Any]]]) -> list[FeatureRecord]:
        """Write every file, then commit all of them with one manifest append (one fsync)."""
        from safetensors.torch import save

        self._check_open()
        self._check_writable()
        prepared = []
        seen: set[str] = set()
        for key, tensors in items:
            check_key(key, self.namespace)
            if key.sample_id in seen:
                raise ValueError(f"put_many: sample {key.sample_id!r} appears twice; put one generation")
            seen.add(key.sample_id)
            specs = specs_of(key, tensors)
            meta = {"namespace": key.namespace, "sample_id": key.sample_id, "generation": str(key.generation),
                    "store_dtype": self.options.dtype}
            stored = {name: _owned(to_store(t, self.options.dtype, key.path())) for name, t in tensors.items()}
            blob = save(stored, metadata=meta)
            prepared.append((FeatureRecord(key=key, specs=specs), blob, sum(t.nbytes for t in stored.values())))
        if not prepared:
            return []

        with self._lock:
            self._check_open()
            self._manifest.refresh()
            entries, replaced, written = [], [], []
            try:
                slot = self._manifest.samples_started
                for record, blob, data_bytes in prepared:
                    previous = self._manifest.entries.get(record.key.sample_id)
                    check_put_generation(record.key, previous.record.key.generation if previous else None)
                    if previous is not None:
                        shard = previous.file.split("/", 1)[0]  # a re-put stays next to its sample
                    else:
                        shard = f"{slot // self.options.shard_size:06d}"
                        slot += 1
                    rel = f"{shard}/{file_stem(record.key.sample_id)}.g{record.key.generation}{SUFFIX}"
                    self._write_atomically(self.dir / rel, blob)
                    written.append(rel)
                    entries.append(ManifestEntry(record, rel, data_bytes, len(blob)))
                    if previous is not None and previous.file != rel:
                        replaced.append(previous.file)
                self._manifest.append(put_event(e) for e in entries)
            except BaseException:
                for rel in written:  # uncommitted: nothing may point at them
                    if not any(e.file == rel for e in self._manifest.entries.values()):
                        (self.dir / rel).unlink(missing_ok=True)
                raise
            for rel in replaced:
                (self.dir / rel).unlink(missing_ok=True)
        return [e.record for e in entries]

    def get(self, record: FeatureRecord, names: Iterable[str] | None = None) -> dict:
        from safetensors import safe_open

        check_record(record, self.namespace)
        chosen = select_names(record, names)
        entry = self._current(record.key)
        where = f"the disk store at {self.dir}"
        if entry is None:
            raise missing(record.key, where)
        if entry.record.key.generation != record.key.generation:
            raise missing(record.key, where, entry.record.key.generation)
        out = {}
        try:
            with safe_open(str(self.dir / entry.file), framework="pt") as f:
                kept_as = (f.metadata() or {}).get("store_dtype", "target")
                for name in chosen:
                    tensor = f.get_tensor(name)
                    spec = record.specs[name]
                    kept = f"torch.{stored_dtype(spec.dtype, kept_as)}"
                    if tuple(tensor.shape) != spec.shape or str(tensor.dtype) != kept:
                        raise ValueError(f"{record.key.path()}: {entry.file} holds {name!r} as "
                                         f"{tuple(tensor.shape)} {tensor.dtype}, the record says {spec}; "
                                         f"the sample was re-put with other tensors, get its new record")
                    restored = from_store(tensor, spec.dtype)
                    # own the bytes (a conversion does already): the file may be deleted next
                    out[name] = restored.clone() if restored is tensor else restored
        except FileNotFoundError:
            raise missing(record.key, where) from None  # deleted by another process meanwhile
        return out

    def delete(self, record: FeatureRecord) -> None:
        """Free a sample; a no-op when it is already gone or ``record`` is of an older generation."""
        check_record(record, self.namespace)
        self._check_open()
        self._check_writable()
        with self._lock:
            self._manifest.refresh()
            entry = self._manifest.entries.get(record.key.sample_id)
            if entry is None or entry.record.key.generation != record.key.generation:
                return
            self._manifest.append([delete_event(record.key)])  # first: readers never list a missing file
            (self.dir / entry.file).unlink(missing_ok=True)

    def exists(self, key: FeatureKey) -> bool:
        check_key(key, self.namespace)
        with self._lock:
            self._manifest.refresh()
            entry = self._manifest.entries.get(key.sample_id)
        return (entry is not None and entry.record.key.generation == key.generation
                and (self.dir / entry.file).is_file())

    def records(self) -> list[FeatureRecord]:
        """Every live record (written by any process), in the order its sample was first put."""
        with self._lock:
            self._manifest.refresh()
            return [e.record for e in self._manifest.entries.values()]

    def health(self) -> StoreHealth:
        with self._lock:
            self._manifest.refresh()
            entries = list(self._manifest.entries.values())
            manifest_bytes = self._manifest.size()
        files = sum(e.file_bytes for e in entries)
        marker = (self.dir / MARKER).stat().st_size if (self.dir / MARKER).is_file() else 0
        return StoreHealth(
            ok=not self._closed and self.dir.is_dir(),
            resident_samples=len(entries),
            resident_bytes=sum(e.data_bytes for e in entries),
            detail={"path": str(self.dir), "file_bytes": files, "manifest_bytes": manifest_bytes,
                    "disk_bytes": files + manifest_bytes + marker})

    def close(self) -> None:
        """Nothing to flush (every put is committed when it returns); later calls raise."""
        self._closed = True

    # ------------------------------------------------------------------ internals

    def _check_writable(self) -> None:
        if self.read_only:
            raise UserError(f"the disk store at {self.dir} is read-only (store.read_only); it cannot be written")

    def _current(self, key: FeatureKey) -> ManifestEntry | None:
        """The live entry of ``key``'s sample, reading the manifest again only on a miss."""
        self._check_open()
        with self._lock:
            entry = self._manifest.entries.get(key.sample_id)
            if entry is None or entry.record.key.generation != key.generation:
                self._manifest.refresh()
                entry = self._manifest.entries.get(key.sample_id)
        return entry

    def _ensure_layout(self) -> None:
        marker = self.dir / MARKER
        if marker.is_file():
            info = json.loads(marker.read_text())
            if info.get("format") != FORMAT or info.get("version") != VERSION:
                raise ValueError(f"{self.dir} is not a version-{VERSION} SpecForge disk store ({info}); "
                                 f"use another root or namespace")
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_atomically(marker, json.dumps({"format": FORMAT, "version": VERSION}).encode() + b"\n")

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """Temp file in the same folder, then ``os.replace``: readers see all of it or nothing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.options.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.options.fsync:
            _fsync_dir(path.parent)


def _owned(tensor: Any) -> Any:
    """A contiguous CPU tensor with its own storage (safetensors refuses shared or strided ones)."""
    t = tensor.detach().to("cpu").contiguous()
    if t.untyped_storage().nbytes() != t.nbytes or t.storage_offset():
        t = t.clone()
    return t
