"""What loading left out, and why: skipped lines and dropped samples, by id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from specforge.data.reader import BadLine

_SHOW = 5  # ids named in a summary line
KINDS = ("skipped_lines", "truncated_ids", "empty_mask_ids", "insufficient_mask_ids", "too_long_ids")


@dataclass(frozen=True)
class DataReport:
    """Everything not trained on (or not evaluated), so nothing is dropped silently.

    ``truncated_ids``: samples cut to ``max_length`` (kept if they still have trained tokens).
    ``empty_mask_ids``: samples with no trained token (after truncation): dropped.
    ``insufficient_mask_ids``: fewer than ``min_loss_tokens`` trained tokens, or no two
    consecutive ones when required: dropped. ``too_long_ids``: prompts over ``max_length``: dropped.
    A streamed corpus keeps only the first ids of each kind; ``totals`` then holds how many there
    were (by field name; a kind missing from it has exactly its listed ids).
    """

    files: tuple[str, ...]
    conversations: int = 0  # lines parsed and rendered
    skipped_lines: tuple[BadLine, ...] = ()
    truncated_ids: tuple[str, ...] = ()
    empty_mask_ids: tuple[str, ...] = ()
    insufficient_mask_ids: tuple[str, ...] = ()
    too_long_ids: tuple[str, ...] = ()
    totals: Mapping[str, int] = field(default_factory=dict)

    def total(self, kind: str) -> int:
        return self.totals.get(kind, len(getattr(self, kind)))

    @property
    def num_skipped(self) -> int:
        return self.total("skipped_lines")

    @property
    def dropped_ids(self) -> tuple[str, ...]:
        return self.empty_mask_ids + self.insufficient_mask_ids + self.too_long_ids

    def problems(self) -> list[str]:
        """One human-readable line per kind of loss; empty when nothing was left out."""
        out = []
        if self.skipped_lines:
            out.append(f"{self.num_skipped} bad line(s) skipped: " + "; ".join(
                str(b) for b in self.skipped_lines[:_SHOW]) + _more(self.num_skipped))
        for kind, what in (("empty_mask_ids", "with no trained token (empty loss mask) dropped"),
                           ("insufficient_mask_ids", "with too few trained tokens dropped"),
                           ("too_long_ids", "longer than max_length dropped"),
                           ("truncated_ids", "truncated to max_length")):
            ids, total = getattr(self, kind), self.total(kind)
            if total:
                out.append(f"{total} sample(s) {what}: {', '.join(ids[:_SHOW])}{_more(total)}")
        return out

    def to_json(self) -> dict:
        return {"files": list(self.files), "conversations": self.conversations,
                "skipped_lines": [[b.path, b.line, b.reason] for b in self.skipped_lines],
                **{kind: list(getattr(self, kind)) for kind in KINDS[1:]},
                "totals": {kind: self.total(kind) for kind in KINDS}}

    @classmethod
    def from_json(cls, obj: dict) -> DataReport:
        return cls(files=tuple(obj.get("files", ())), conversations=int(obj.get("conversations", 0)),
                   skipped_lines=tuple(BadLine(p, int(n), r) for p, n, r in obj.get("skipped_lines", ())),
                   **{kind: tuple(obj.get(kind, ())) for kind in KINDS[1:]},
                   totals={k: int(v) for k, v in (obj.get("totals") or {}).items()})


def _more(total: int) -> str:
    return f" (+{total - _SHOW} more)" if total > _SHOW else ""
