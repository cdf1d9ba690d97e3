"""Read what a W&B offline run wrote, independently of the code under test.

A ``run-<id>.wandb`` file is a LevelDB-style log (W&B's transaction log): a 7-byte header
(``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of chunks, each ``crc32 (4) | length (2) |
type (1) | data``, where type 1 is a whole record and 2/3/4 the first/middle/last piece of one
spanning blocks. Each record is a ``wandb.proto.wandb_internal_pb2.Record``. The Python SDK no
longer ships a reader (its Go core reads these files), so the test carries this one.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    data = path.read_bytes()
    ident, magic, _version = HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B transaction log"
    out, pending, pos = [], b"", HEADER.size
    while pos + CHUNK.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # the rest of a block too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        piece, pos = data[pos:pos + length], pos + length
        if kind == 0 and length == 0:
            break  # zero fill at the end of the last block
        pending = piece if kind in (FULL, FIRST) else pending + piece
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    """The parts of one offline run a test asserts on."""

    run_id: str = ""
    name: str = ""
    project: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # each row with its "_step"
    summary: dict[str, Any] = field(default_factory=dict)


def read_offline_run(folder: Path) -> OfflineRun:
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.name, run.project = record.run.run_id, record.run.display_name, record.run.project
            for item in record.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            row = {_key(item): json.loads(item.value_json) for item in record.history.item}
            if record.history.HasField("step"):
                row.setdefault("_step", record.history.step.num)
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
    return run
