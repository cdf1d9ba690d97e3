"""A tokenizer's special tokens and size read from its files, without loading it (no transformers).

``run --plan`` uses this to resolve a mask token and to check a tokenizer exists before any
model loads; a loaded tokenizer gives the same facts through ``special_tokens_of``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from specforge.contracts import SpecialTokens

_ROLES = ("mask", "pad", "eos", "unk", "bos")


def _content(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return obj if isinstance(obj, dict) else {}


def read_special_tokens(model_dir: str | Path) -> SpecialTokens:
    """Special token ids and the tokenizer's size from tokenizer_config.json and tokenizer.json."""
    model_dir = Path(model_dir)
    config = _read_json(model_dir / "tokenizer_config.json")
    tok = _read_json(model_dir / "tokenizer.json")
    ids: dict[str, int] = {}
    for token_id, entry in (config.get("added_tokens_decoder") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            ids[entry["content"]] = int(token_id)
    for entry in tok.get("added_tokens") or []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and isinstance(entry.get("id"), int):
            ids.setdefault(entry["content"], entry["id"])
    vocab = (tok.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict):
        lookup = {**vocab, **ids}
    else:  # unigram models keep a list of [piece, score]
        lookup = {**{p[0]: i for i, p in enumerate(vocab) if isinstance(p, list) and p}, **ids}
    found = {role: lookup.get(_content(config.get(f"{role}_token"))) if _content(config.get(f"{role}_token"))
             else None for role in _ROLES}
    size = None
    if lookup:
        size = max(int(i) for i in lookup.values()) + 1
    return SpecialTokens(tokenizer_size=size, **found)


def special_tokens_of(tokenizer: Any) -> SpecialTokens:
    """The same facts from a loaded Hugging Face tokenizer."""
    def get(role: str) -> int | None:
        value = getattr(tokenizer, f"{role}_token_id", None)
        return int(value) if isinstance(value, int) else None

    return SpecialTokens(tokenizer_size=len(tokenizer), **{role: get(role) for role in _ROLES})
