"""Read conversation JSONL files into ``Conversation`` records, line by line.

A bad line raises ``DataError`` naming ``file:line``, or, with ``skip_bad_lines``, is
recorded as a ``BadLine`` and skipped. Sample ids are the line's ``id`` when it has one, else
``<file stem>-<line number>``: stable across runs and independent of the shuffle seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from specforge.data.conversations import Conversation, parse_conversation
from specforge.data.errors import DataError

PathLike = str | Path


@dataclass(frozen=True)
class BadLine:
    """A line that could not be used, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path or several; each must be an existing file."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise DataError("no data file given; pass a conversations JSONL file")
    out = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise DataError(f"data file {str(path)!r} does not exist (expected a conversations JSONL file)")
        out.append(path)
    return out


class LineSink:
    """Where bad lines go: raise at once, or collect them when the caller asked to skip."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.lines: list[BadLine] = []

    def bad(self, path: str, line: int, reason: str) -> None:
        bad = BadLine(path, line, reason)
        if not self.skip:
            raise DataError(f"{bad}; fix the line, or skip bad lines: --set data.skip_bad_lines=true "
                            f"(prepare-data: --skip-bad-lines)")
        self.lines.append(bad)


def read_conversations(paths: PathLike | Sequence[PathLike], sink: LineSink) -> Iterator[Conversation]:
    """Yield each usable line of each file, in file order; blank lines are ignored."""
    seen: dict[str, str] = {}
    for path in as_paths(paths):
        name = str(path)
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                source = f"{name}:{lineno}"
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    sink.bad(name, lineno, "line is not valid UTF-8")
                    continue
                except json.JSONDecodeError as exc:
                    sink.bad(name, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})")
                    continue
                try:
                    conv_id, messages, tools = parse_conversation(obj)
                except ValueError as exc:
                    sink.bad(name, lineno, str(exc))
                    continue
                conv_id = conv_id or f"{path.stem}-{lineno}"
                if conv_id in seen:
                    sink.bad(name, lineno, f"duplicate id {conv_id!r} (first seen at {seen[conv_id]}); "
                                           "sample ids must be unique")
                    continue
                seen[conv_id] = source
                yield Conversation(conv_id=conv_id, path=name, line=lineno, messages=messages, tools=tools)
