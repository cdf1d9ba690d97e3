"""Tokenize rendered conversations and turn assistant character spans into a token loss mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from specforge.data.errors import DataError

Span = tuple[int, int]


def require_fast_tokenizer(tokenizer: Any) -> None:
    """Offsets (character spans per token) need a Rust-backed "fast" tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer: loss masks need token "
            "character offsets; load it with AutoTokenizer.from_pretrained(dir) (tokenizer.json present)"
        )


def tokenize_with_offsets(tokenizer: Any, texts: Sequence[str]) -> list[tuple[list[int], list[Span]]]:
    """Token ids and character offsets per text; the template already wrote every special token."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return [(list(ids), [tuple(o) for o in offs])
            for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]


def spans_to_mask(offsets: Sequence[Span], spans: Sequence[Span]) -> list[int]:
    """1 for every token sharing at least one character with a trained span, else 0.

    A token that straddles a span edge (BPE merging the header's last newline with the reply's
    first) is trained: it carries reply text. Spans are sorted and disjoint. [S]
    """
    mask = [0] * len(offsets)
    k = 0
    for t, (a, b) in enumerate(offsets):
        while k < len(spans) and spans[k][1] <= a:
            k += 1
        if k == len(spans):
            break
        start, end = spans[k]
        if (max(a, start) < min(b, end)) or (a == b and start <= a < end):
            mask[t] = 1
    return mask


def has_consecutive_ones(mask: Sequence[int]) -> bool:
    """Two adjacent supervised tokens: what block-drafting strategies (DFlash) need for an anchor."""
    return any(mask[t] and mask[t + 1] for t in range(len(mask) - 1))
