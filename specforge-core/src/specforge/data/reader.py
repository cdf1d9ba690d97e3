"""Read conversation files (``sources``: JSONL, compressed, Parquet, datasets) into ``Conversation`` records.

A bad line raises ``DataError`` naming ``file:line``, or, with ``skip_bad_lines``, is
recorded as a ``BadLine`` and skipped. Sample ids are the line's ``id`` when it has one, else
``<file stem>-<line number>``: stable across runs and independent of the shuffle seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from specforge.data.conversations import Conversation, parse_category, parse_conversation
from specforge.data.errors import DataError
from specforge.data.sources import RecordReader, is_dataset_dir, source_stem

PathLike = str | Path
KEEP_BAD_LINES = 1000  # bad lines kept (with their reasons) for the report; the rest are counted


@dataclass(frozen=True)
class BadLine:
    """A line that could not be used, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path or several; each an existing file or a ``datasets`` ``save_to_disk`` directory."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise DataError("no data file given; pass a conversations JSONL file")
    out = []
    for item in items:
        path = Path(item)
        if path.is_dir() and not is_dataset_dir(path):
            raise DataError(f"data path {str(path)!r} is a directory but not a dataset saved with "
                            f"save_to_disk; pass a conversations JSONL (or .gz, .zst, .parquet) file")
        if not path.exists():
            raise DataError(f"data file {str(path)!r} does not exist (expected a conversations JSONL file)")
        out.append(path)
    return out


class LineSink:
    """Where bad lines go: raise at once, or collect them when the caller asked to skip."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.lines: list[BadLine] = []  # the first KEEP_BAD_LINES of them
        self.count = 0

    def bad(self, path: str, line: int, reason: str) -> None:
        bad = BadLine(path, line, reason)
        if not self.skip:
            raise DataError(f"{bad}; fix the line, or skip bad lines: --set data.skip_bad_lines=true "
                            f"(prepare-data: --skip-bad-lines)")
        self.count += 1
        if len(self.lines) < KEEP_BAD_LINES:
            self.lines.append(bad)


def duplicate_reason(conv_id: str, first_seen: str) -> str:
    return f"duplicate id {conv_id!r} (first seen at {first_seen}); sample ids must be unique"


def read_conversations(paths: PathLike | Sequence[PathLike], sink: LineSink, *,
                       dedupe: bool = True) -> Iterator[Conversation]:
    """Yield each usable line of each file, in file order; blank lines are ignored.

    ``dedupe`` checks ids here, remembering every id (memory grows with the corpus); the
    tokenized-dataset builder passes False and checks them in constant memory per sample instead.
    """
    seen: dict[str, str] = {}
    for path in as_paths(paths):
        stem = source_stem(path)
        for record in RecordReader(path):
            name, lineno = record.path, record.line
            if record.error is not None:
                sink.bad(name, lineno, record.error)
                continue
            try:
                conv_id, messages, tools = parse_conversation(record.obj)
                category = parse_category(record.obj)
            except ValueError as exc:
                sink.bad(name, lineno, str(exc))
                continue
            conv_id = conv_id or f"{stem}-{lineno}"
            if dedupe:
                if conv_id in seen:
                    sink.bad(name, lineno, duplicate_reason(conv_id, seen[conv_id]))
                    continue
                seen[conv_id] = f"{name}:{lineno}"
            yield Conversation(conv_id=conv_id, path=name, line=lineno, messages=messages, tools=tools,
                               category=category)
