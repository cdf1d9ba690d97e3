"""The disk store's manifest: an append-only JSONL journal of puts and deletes.

Why a journal: every put appends one line after its file is in place, so a reader in any
process learns what exists by reading the lines it has not seen yet (no full rescan, no
directory walk), and a line is the unit of commit:

- a line is written with one ``write`` on an ``O_APPEND`` descriptor, so lines from several
  processes never interleave on a local filesystem;
- readers act only on complete (newline-terminated) lines, so a line being written is never
  half-read; a fragment left by a crashed writer is ended with a newline by the next writer
  and skipped by readers (logged), so the manifest is never acted on half-written;
- replay is deterministic: ``put`` makes its record the sample's current one (a generation
  older than the current one is ignored), ``delete`` drops the sample when the generation
  matches. The result is the index of live records, in the order samples were first put.

Lines: ``{"op": "put", "record": FeatureRecord.to_json(), "file": "<shard>/<name>",
"data_bytes": int, "file_bytes": int}`` and ``{"op": "delete", "key": {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import FeatureKey, FeatureRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestEntry:
    """A live record and where its bytes are."""

    record: FeatureRecord
    file: str  # relative to the store folder: "<shard>/<name>.safetensors"
    data_bytes: int  # tensor bytes, unpadded
    file_bytes: int  # size of the safetensors file (data + header)


def put_event(entry: ManifestEntry) -> dict:
    return {"op": "put", "record": entry.record.to_json(), "file": entry.file,
            "data_bytes": entry.data_bytes, "file_bytes": entry.file_bytes}


def delete_event(key: FeatureKey) -> dict:
    return {"op": "delete",
            "key": {"namespace": key.namespace, "sample_id": key.sample_id, "generation": key.generation}}


class Manifest:
    """The journal file and the index of live records replayed from it (not thread-safe)."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.entries: dict[str, ManifestEntry] = {}  # sample_id -> current entry, first-put order
        self.samples_started = 0  # puts of a sample that was not live: the disk store's shard counter
        self._offset = 0  # bytes of the file already replayed
        self._tail_checked = False

    def refresh(self) -> None:
        """Replay the complete lines appended since the last refresh (by any process)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if not end:
            return
        for line in data[:end].splitlines():
            if line.strip():
                self._apply_line(line)
        self._offset += end

    def append(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Append events as complete lines in one write, then replay them (and anything before)."""
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not self._tail_checked:
                self._end_torn_line(fd)
            written = os.write(fd, data)
            if written != len(data):  # only on a full disk or similar; the reader skips the fragment
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.refresh()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------ internals

    def _end_torn_line(self, fd: int) -> None:
        """Terminate a fragment a crashed writer left, so our first line does not join it."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            log.warning("%s ends with an incomplete line (a writer crashed mid-append); ending it", self.path)
            os.write(fd, b"\n")
        self._tail_checked = True

    def _apply_line(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            op = event["op"]
            if op == "put":
                record = FeatureRecord.from_json(event["record"])
                self._apply_put(ManifestEntry(record, str(event["file"]), int(event["data_bytes"]),
                                              int(event["file_bytes"])))
            elif op == "delete":
                self._apply_delete(FeatureKey(**event["key"]))
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: skipping an unreadable line (%s): %.200r", self.path, exc, line)

    def _apply_put(self, entry: ManifestEntry) -> None:
        sample_id = entry.record.key.sample_id
        current = self.entries.get(sample_id)
        if current is None:
            self.samples_started += 1
        elif entry.record.key.generation < current.record.key.generation:
            return  # a stale writer lost the race; its file is not served
        self.entries[sample_id] = entry

    def _apply_delete(self, key: FeatureKey) -> None:
        current = self.entries.get(key.sample_id)
        if current is not None and current.record.key.generation == key.generation:
            del self.entries[key.sample_id]
