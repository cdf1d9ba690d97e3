"""What loading left out, and why: skipped lines and dropped samples, by id."""

from __future__ import annotations

from dataclasses import dataclass

from specforge.data.reader import BadLine

_SHOW = 5  # ids named in a summary line


@dataclass(frozen=True)
class DataReport:
    """Everything not trained on (or not evaluated), so nothing is dropped silently.

    ``truncated_ids``: samples cut to ``max_length`` (kept if they still have trained tokens).
    ``empty_mask_ids``: samples with no trained token (after truncation): dropped.
    ``insufficient_mask_ids``: fewer than ``min_loss_tokens`` trained tokens, or no two
    consecutive ones when required: dropped. ``too_long_ids``: prompts over ``max_length``: dropped.
    """

    files: tuple[str, ...]
    conversations: int = 0  # lines parsed and rendered
    skipped_lines: tuple[BadLine, ...] = ()
    truncated_ids: tuple[str, ...] = ()
    empty_mask_ids: tuple[str, ...] = ()
    insufficient_mask_ids: tuple[str, ...] = ()
    too_long_ids: tuple[str, ...] = ()

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_lines)

    @property
    def dropped_ids(self) -> tuple[str, ...]:
        return self.empty_mask_ids + self.insufficient_mask_ids + self.too_long_ids

    def problems(self) -> list[str]:
        """One human-readable line per kind of loss; empty when nothing was left out."""
        out = []
        if self.skipped_lines:
            out.append(f"{self.num_skipped} bad line(s) skipped: " + "; ".join(
                str(b) for b in self.skipped_lines[:_SHOW]) + _more(self.skipped_lines))
        for ids, what in ((self.empty_mask_ids, "with no trained token (empty loss mask) dropped"),
                          (self.insufficient_mask_ids, "with too few trained tokens dropped"),
                          (self.too_long_ids, "longer than max_length dropped"),
                          (self.truncated_ids, "truncated to max_length")):
            if ids:
                out.append(f"{len(ids)} sample(s) {what}: {', '.join(ids[:_SHOW])}{_more(ids)}")
        return out


def _more(items: tuple) -> str:
    return f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
