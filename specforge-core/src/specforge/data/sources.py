"""Raw conversation records, read lazily from every supported kind of data path.

* a conversations JSONL file (any file that is not one of the kinds below), or one compressed
  with gzip (``.gz``) or Zstandard (``.zst``/``.zstd``, the ``zstandard`` package);
* a Parquet file (``.parquet``, pyarrow: ``pip install specforge-core[parquet]``), read in
  row batches;
* a directory saved with Hugging Face ``datasets``' ``save_to_disk``: a ``Dataset`` (its Arrow
  files, in order) or a ``DatasetDict`` (its ``train`` split, or its only split), read with
  pyarrow alone (the ``datasets`` package is not needed).

Nothing is read whole: memory is one line or one record batch. Records from columnar formats
have their null fields removed, so a column that only some rows fill (``tools``, a message's
``reasoning_content``) reads like a JSON line that leaves the key out.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from specforge.data.errors import DataError

COMPRESSED = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_BATCH_ROWS = 256


@dataclass(frozen=True)
class RawRecord:
    """One line or row: its decoded object, or why it could not be decoded."""

    path: str
    line: int  # 1-based line (JSONL) or row (Parquet, Arrow)
    obj: Any = None
    error: str | None = None


def is_dataset_dir(path: Path) -> bool:
    """A directory written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def source_kind(path: Path) -> str:
    """``jsonl``, ``gzip``, ``zstd``, ``parquet`` or ``hf-dataset``."""
    if path.is_dir():
        return "hf-dataset"
    suffix = path.suffix.lower()
    if suffix in COMPRESSED:
        return COMPRESSED[suffix]
    return "parquet" if suffix == ".parquet" else "jsonl"


def source_stem(path: Path) -> str:
    """The name default sample ids start with: ``chats`` for chats.jsonl, chats.jsonl.zst, chats/."""
    name = path.name
    for suffix in (*COMPRESSED, ".parquet", ".jsonl", ".json"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


class RecordReader:
    """Iterate one data path's records; ``consumed``/``total`` say how far into its bytes it is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = source_kind(path)
        self.files = _dataset_files(path) if self.kind == "hf-dataset" else [path]
        self.total = sum(f.stat().st_size for f in self.files)
        self.consumed = 0

    def rows(self) -> int | None:
        """The exact number of records when the format stores it (Parquet, Arrow), else None."""
        if self.kind == "parquet":
            return _pyarrow("Parquet").parquet.ParquetFile(str(self.path)).metadata.num_rows
        if self.kind == "hf-dataset":
            pa = _pyarrow("Hugging Face dataset directories")
            total = 0
            for file in self.files:
                with pa.memory_map(str(file)) as source:
                    total += sum(batch.num_rows for batch in pa.ipc.open_stream(source))
            return total
        return None

    def __iter__(self) -> Iterator[RawRecord]:
        if self.kind in ("jsonl", "gzip", "zstd"):
            yield from self._lines()
        else:
            yield from self._rows()

    def _lines(self) -> Iterator[RawRecord]:
        name = str(self.path)
        with open(self.path, "rb") as raw:
            stream = _decompressed(raw, self.kind, name)
            for lineno, line in enumerate(stream, start=1):
                self.consumed = raw.tell()
                if not line.strip():
                    continue
                try:
                    yield RawRecord(name, lineno, json.loads(line.decode("utf-8")))
                except UnicodeDecodeError:
                    yield RawRecord(name, lineno, error="line is not valid UTF-8")
                except json.JSONDecodeError as exc:
                    yield RawRecord(name, lineno, error=f"invalid JSON ({exc.msg} at column {exc.colno})")
            self.consumed = self.total

    def _rows(self) -> Iterator[RawRecord]:
        name = str(self.path)
        row = 0
        for file, batches in self._batches():
            for batch in batches:
                for obj in batch.to_pylist():
                    row += 1
                    yield RawRecord(name, row, _without_nulls(obj))
            self.consumed += file.stat().st_size

    def _batches(self) -> Iterator[tuple[Path, Any]]:
        """(file, its record batches); ``consumed`` advances per file for these formats."""
        if self.kind == "parquet":
            pq = _pyarrow("Parquet").parquet
            yield self.path, pq.ParquetFile(str(self.path)).iter_batches(batch_size=_BATCH_ROWS)
            return
        pa = _pyarrow("Hugging Face dataset directories")
        for file in self.files:
            with pa.memory_map(str(file)) as source:
                yield file, pa.ipc.open_stream(source)


def _decompressed(raw: BinaryIO, kind: str, name: str) -> BinaryIO:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{name} is Zstandard-compressed: install the zstandard package "
                            f"(pip install zstandard, or specforge-core[train])") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))
    return raw


def _pyarrow(what: str) -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{what} need pyarrow: pip install specforge-core[parquet] (or pip install pyarrow)") \
            from None
    return pyarrow


def _without_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_without_nulls(v) for v in obj]
    return obj


def _dataset_files(path: Path) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` directory, in order (a DatasetDict: its train split)."""
    if (path / "dataset_dict.json").is_file() and not (path / "state.json").is_file():
        splits = _read_json(path / "dataset_dict.json").get("splits") or []
        chosen = "train" if "train" in splits else (splits[0] if len(splits) == 1 else None)
        if chosen is None:
            raise DataError(f"{path} is a DatasetDict with splits {', '.join(map(str, splits))} and none is called "
                            f"'train'; pass the split's folder, e.g. --data {path / str(splits[0])}" if splits else
                            f"{path} is a DatasetDict without splits (dataset_dict.json lists none)")
        path = path / chosen
    state = _read_json(path / "state.json")
    files = [path / entry["filename"] for entry in state.get("_data_files") or [] if "filename" in entry]
    if not files:
        raise DataError(f"{path} looks like a datasets save_to_disk directory but its state.json names no "
                        f"data files; save it again with Dataset.save_to_disk")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{path}: the data files {', '.join(missing)} named in state.json are missing")
    return files


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return obj if isinstance(obj, dict) else {}
