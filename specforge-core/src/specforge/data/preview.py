"""Human-readable views of samples: trained tokens highlighted, plus corpus statistics."""

from __future__ import annotations

from typing import Any

from specforge.contracts import DataStats, Sample
from specforge.data.report import DataReport

BRACKETS = ("[[", "]]")
ANSI_GREEN = ("\x1b[1;32m", "\x1b[0m")


def highlight(tokenizer: Any, sample: Sample, marks: tuple[str, str] = BRACKETS) -> str:
    """The sample's text with each run of trained tokens wrapped in ``marks``."""
    pieces = []
    run: list[int] = []
    trained = None
    for token, m in zip(sample.input_ids, sample.loss_mask):
        if trained is not None and bool(m) != trained:
            pieces.append(_piece(tokenizer, run, trained, marks))
            run = []
        run.append(token)
        trained = bool(m)
    if run:
        pieces.append(_piece(tokenizer, run, bool(trained), marks))
    return "".join(pieces)


def _piece(tokenizer: Any, ids: list[int], trained: bool, marks: tuple[str, str]) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return f"{marks[0]}{text}{marks[1]}" if trained else text


def stats_lines(stats: DataStats, report: DataReport) -> list[str]:
    """Token and mask statistics, then what was left out and why."""
    fraction = stats.num_loss_tokens / stats.num_tokens if stats.num_tokens else 0.0
    mean = stats.num_tokens / stats.num_samples if stats.num_samples else 0.0
    lines = [
        f"samples:            {stats.num_samples} (of {report.conversations} conversations read)",
        f"tokens:             {stats.num_tokens} (mean {mean:.1f} per sample)",
        f"loss tokens:        {stats.num_loss_tokens} ({fraction:.1%} of tokens)",
        f"distinct trained:   {len(stats.loss_token_counts)} token ids",
        f"truncated samples:  {report.total('truncated_ids')}",
        f"empty-mask samples: {report.total('empty_mask_ids')} (dropped)",
        f"too few loss tokens:{report.total('insufficient_mask_ids'):>2} (dropped)",
        f"skipped lines:      {report.num_skipped}",
        f"corpus hash:        {stats.corpus_hash}",
    ]
    return lines + [f"  {p}" for p in report.problems()]
