"""The tokenized dataset: token ids + loss masks on disk, read one sample at a time.

What ``specforge prepare-data --output DIR`` writes and what a run on raw data caches under
``$SPECFORGE_CACHE_DIR/tokenized/<key>``. It is the random-access layer a shuffled data plan
reads from (compressed text has none), so every rank and producer reads only its own samples.
Layout::

    tokenized.json            metadata: tokenizer and chat-template identity, max_length, sources,
                              statistics (counts, corpus hash), what was left out, the shards
    loss_token_counts.json    {token id: times trained}: EAGLE3 builds its draft vocabulary from it
    shard-00000.safetensors   a few million tokens of samples each

A shard is a plain safetensors file (readable by ``safetensors.safe_open``): ``offsets`` I64
[n+1] and ``input_ids`` U32 [T] / ``loss_mask`` U8 [T] (sample i is ``offsets[i]:offsets[i+1]``),
``id_offsets`` I64 [n+1] and ``sample_ids`` U8 (UTF-8 ids, concatenated). Reading a sample is
five small ``pread`` calls; nothing per sample is held in memory, and torch is not needed.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import DataStats, Sample
from specforge.data.errors import DataError
from specforge.data.stats import counts_from_json

FORMAT = "specforge.tokenized"
VERSION = 1
META = "tokenized.json"
COUNTS = "loss_token_counts.json"
SHARD_TOKENS = 1 << 21  # tokens per shard (~10 MB): what a writer buffers before a shard is written
_DTYPES = {"offsets": ("I64", "q"), "id_offsets": ("I64", "q"), "input_ids": ("U32", "I"),
           "loss_mask": ("U8", "B"), "sample_ids": ("U8", "B")}
_ORDER = ("offsets", "id_offsets", "input_ids", "loss_mask", "sample_ids")  # 8-byte aligned first


def is_tokenized_dir(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def _le(values: array) -> bytes:
    if sys.byteorder != "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


class ShardWriter:
    """Samples of one shard, buffered until ``write``."""

    def __init__(self) -> None:
        self.offsets = array("q", [0])
        self.id_offsets = array("q", [0])
        self.input_ids = array("I")
        self.loss_mask = bytearray()
        self.sample_ids = bytearray()

    @property
    def num_samples(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def add(self, sample: Sample) -> None:
        self.input_ids.extend(sample.input_ids)
        self.loss_mask.extend(sample.loss_mask)
        self.offsets.append(len(self.input_ids))
        self.sample_ids.extend(sample.sample_id.encode("utf-8"))
        self.id_offsets.append(len(self.sample_ids))

    def write(self, path: Path) -> None:
        blobs = {"offsets": _le(self.offsets), "id_offsets": _le(self.id_offsets),
                 "input_ids": _le(self.input_ids), "loss_mask": bytes(self.loss_mask),
                 "sample_ids": bytes(self.sample_ids)}
        header: dict[str, Any] = {"__metadata__": {"format": f"{FORMAT}-shard", "version": str(VERSION)}}
        start = 0
        for name in _ORDER:
            size = len(blobs[name])
            width = struct.calcsize(_DTYPES[name][1])
            header[name] = {"dtype": _DTYPES[name][0], "shape": [size // width], "data_offsets": [start, start + size]}
            start += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # safetensors allows space padding; keeps the data 8-byte aligned
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in _ORDER:
                f.write(blobs[name])


class _Shard:
    """One shard file opened lazily (again after a fork), read with ``os.pread``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1
        self._where: dict[str, int] = {}

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
            (length,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
            header = json.loads(os.pread(self._fd, length, 8))
            self._where = {name: 8 + length + header[name]["data_offsets"][0] for name in _ORDER}
        return self._fd

    def _read(self, name: str, start: int, count: int) -> array:
        fd = self._open()
        code = _DTYPES[name][1]
        width = struct.calcsize(code)
        out = array(code)
        out.frombytes(os.pread(fd, count * width, self._where[name] + start * width))
        if sys.byteorder != "little" and width > 1:
            out.byteswap()
        if len(out) != count:
            raise DataError(f"{self.path} is truncated ({name}); prepare the data again")
        return out

    def sample(self, j: int) -> Sample:
        a, b = self._read("offsets", j, 2)
        i, k = self._read("id_offsets", j, 2)
        sample_id = self._read("sample_ids", i, k - i).tobytes().decode("utf-8")
        return Sample(sample_id, tuple(self._read("input_ids", a, b - a)), tuple(self._read("loss_mask", a, b - a)))

    def ids(self, count: int) -> list[str]:
        """Every sample id of the shard, in order (one read)."""
        offsets = self._read("id_offsets", 0, count + 1)
        blob = self._read("sample_ids", 0, offsets[-1]).tobytes()
        return [blob[offsets[j]:offsets[j + 1]].decode("utf-8") for j in range(count)]

    def lengths(self, count: int) -> array:
        offsets = self._read("offsets", 0, count + 1)
        return array("q", (offsets[j + 1] - offsets[j] for j in range(count)))

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


@dataclass(frozen=True)
class ShardInfo:
    file: str
    num_samples: int
    num_tokens: int


class TokenizedDataset(Sequence[Sample]):
    """Random access to a tokenized dataset's samples, in the order they were written."""

    def __init__(self, directory: str | Path, meta: dict | None = None) -> None:
        self.dir = Path(directory)
        self.meta = meta if meta is not None else read_meta(self.dir)
        self.shards = [ShardInfo(**s) for s in self.meta["shards"]]
        self._starts = [0]
        for shard in self.shards:
            self._starts.append(self._starts[-1] + shard.num_samples)
        self._files = [_Shard(self.dir / s.file) for s in self.shards]

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(f"sample {index} of a tokenized dataset of {len(self)}")
        s = bisect.bisect_right(self._starts, i) - 1
        return self._files[s].sample(i - self._starts[s])

    def ids(self) -> Iterator[str]:
        """Every sample id in order, shard by shard (for the held-out split)."""
        for info, shard in zip(self.shards, self._files):
            yield from shard.ids(info.num_samples)

    def lengths(self) -> Iterator[int]:
        for info, shard in zip(self.shards, self._files):
            yield from shard.lengths(info.num_samples)

    def stats(self) -> DataStats:
        """The whole dataset's statistics, from its metadata (the loss-token counts read on demand)."""
        return meta_stats(self.meta, self.dir)

    def close(self) -> None:
        for shard in self._files:
            shard.close()


def read_meta(directory: Path) -> dict:
    path = directory / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable tokenized dataset ({exc}); prepare the data again") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"{directory} holds a tokenized dataset of format {meta.get('format')!r} version "
                        f"{meta.get('version')!r}; this SpecForge reads {FORMAT!r} version {VERSION}: "
                        f"prepare the data again (specforge prepare-data --output DIR)")
    return meta


def meta_stats(meta: dict, directory: Path) -> DataStats:
    s = meta["stats"]
    counts = counts_from_json(json.loads((directory / COUNTS).read_text(encoding="utf-8")))
    return DataStats(num_samples=s["num_samples"], num_tokens=s["num_tokens"], num_loss_tokens=s["num_loss_tokens"],
                     corpus_hash=s["corpus_hash"], loss_token_counts=counts)
