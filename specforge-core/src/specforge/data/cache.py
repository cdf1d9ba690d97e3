"""The tokenized-dataset cache: a run on raw data tokenizes it once, under ``$SPECFORGE_CACHE_DIR/tokenized``.

The entry is named by ``TokenizeSpec.key()`` (data files, tokenizer, chat template, max_length
and the filtering options), so a changed tokenizer, template or max_length gets a new entry and
is never served an old one. Ranks and producers of one run that ask at once serialise on a lock:
the first tokenizes, the others open its result. Finding an entry reads files only (``--plan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.data.identity import TokenizeSpec
from specforge.data.tokenized import META, TokenizedDataset


def tokenized_root() -> Path:
    from specforge.demo.cache import default_cache_dir

    return default_cache_dir() / "tokenized"


def cache_entry(spec: TokenizeSpec) -> Path:
    return tokenized_root() / spec.key()


def find_cached(spec: TokenizeSpec) -> Path | None:
    """The finished cache entry for ``spec``, or None."""
    entry = cache_entry(spec)
    return entry if (entry / META).is_file() else None


def ensure_tokenized(spec: TokenizeSpec, tokenizer: Any, *, progress: bool = True,
                     workers: int = 0) -> tuple[TokenizedDataset, bool]:
    """(the cached dataset, whether this call built it), tokenizing only when no entry exists."""
    from specforge.data.build import build_tokenized
    from specforge.demo.cache import build_once

    entry = cache_entry(spec)
    built = build_once(entry, META, lambda tmp: build_tokenized(spec, tokenizer, tmp, progress=progress,
                                                                         workers=workers).close())
    return TokenizedDataset(entry), built
