"""Conversations -> token ids + loss masks, streamed: the one tokenization step every data path uses.

``tokenize_stream`` renders each conversation with the chat template, tokenizes chunks of them
in one Rust call, cuts to ``max_length`` and decides whether the sample is trained; ``Tally``
counts what was left out, keeping only the first ids of each kind, so a corpus of any size is
summarised in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from specforge.contracts import Sample
from specforge.data.chat_template import ChatRenderer
from specforge.data.conversations import Conversation
from specforge.data.loss_mask import has_consecutive_ones, spans_to_mask, tokenize_with_offsets
from specforge.data.reader import LineSink
from specforge.data.report import DataReport

CHUNK = 64  # conversations tokenized per call (the Rust tokenizer batches them)
KEEP_IDS = 1000  # ids of each kind of loss named in a report; the rest are counted


@dataclass(frozen=True)
class Outcome:
    """What became of one conversation: ``kept``, ``empty`` (no trained token) or ``insufficient``."""

    conv: Conversation
    sample: Sample
    truncated: bool
    verdict: str


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tokenize_stream(conversations: Iterable[Conversation], tokenizer: Any, renderer: ChatRenderer,
                    sink: LineSink, *, max_length: int, min_loss_tokens: int = 1,
                    require_consecutive: bool = False) -> Iterator[Outcome]:
    """One ``Outcome`` per conversation the template could render, in input order."""
    for chunk in chunks(conversations, CHUNK):
        rendered = []
        for conv in chunk:
            try:
                text, spans = renderer.assistant_spans(conv)
            except ValueError as exc:
                sink.bad(conv.path, conv.line, str(exc))
                continue
            rendered.append((conv, text, spans))
        encoded = tokenize_with_offsets(tokenizer, [text for _, text, _ in rendered])
        for (conv, _, spans), (full_ids, offsets) in zip(rendered, encoded):
            ids, mask = full_ids[:max_length], spans_to_mask(offsets, spans)[:max_length]
            truncated = len(full_ids) > max_length
            trained = sum(mask)
            if trained == 0:
                verdict = "empty"
            elif trained < min_loss_tokens or (require_consecutive and not has_consecutive_ones(mask)):
                verdict = "insufficient"
            else:
                verdict = "kept"
            yield Outcome(conv, Sample(conv.conv_id, tuple(ids), tuple(mask)), truncated, verdict)


class Tally:
    """Counts of what tokenization left out, with the first ``KEEP_IDS`` ids of each kind."""

    def __init__(self) -> None:
        self.conversations = 0
        self.ids: dict[str, list[str]] = {"truncated_ids": [], "empty_mask_ids": [], "insufficient_mask_ids": []}
        self.totals: dict[str, int] = dict.fromkeys(self.ids, 0)

    def add(self, outcome: Outcome) -> None:
        self.conversations += 1
        if outcome.truncated:
            self._note("truncated_ids", outcome.conv.conv_id)
        if outcome.verdict != "kept":
            self._note("empty_mask_ids" if outcome.verdict == "empty" else "insufficient_mask_ids",
                       outcome.conv.conv_id)

    def _note(self, kind: str, conv_id: str) -> None:
        self.totals[kind] += 1
        if len(self.ids[kind]) < KEEP_IDS:
            self.ids[kind].append(conv_id)

    def report(self, files: Iterable[str], sink: LineSink) -> DataReport:
        return DataReport(files=tuple(files), conversations=self.conversations, skipped_lines=tuple(sink.lines),
                          **{kind: tuple(ids) for kind, ids in self.ids.items()},
                          totals={**self.totals, "skipped_lines": sink.count})
