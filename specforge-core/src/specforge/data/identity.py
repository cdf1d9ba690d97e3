"""What decides a tokenized dataset's bytes, as hashes: the cache key and the metadata check.

Everything here reads files only (no torch, no transformers), so ``run --plan`` computes the
same key a run would and finds the cache the run would use. The identity of:

* the tokenizer: SHA-256 over every tokenizer file of the model directory (names and bytes),
  chat template files included;
* the chat template: SHA-256 of the template text in effect (the ``data.chat_template`` file's,
  else the tokenizer's own) plus the template variables;
* the raw data: each file's resolved path, size and modification time (a changed or touched
  file is tokenized again; hashing terabytes of text on every run would cost more than it saves).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.data.sources import is_dataset_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "vocab.txt", "spiece.model")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
BUILD_VERSION = 1  # bump when tokenization itself changes what a dataset holds


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tokenizer_hash(model_dir: str | Path) -> str:
    """SHA-256 of the model directory's tokenizer files (any ``*.tiktoken`` too)."""
    directory = Path(model_dir)
    names = sorted({n for n in TOKENIZER_FILES if (directory / n).is_file()}
                   | {p.name for p in directory.glob("*.tiktoken") if p.is_file()})
    digest = hashlib.sha256()
    for name in names:
        data = (directory / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def own_template(model_dir: str | Path) -> str | None:
    """The tokenizer's own chat template text, as transformers would find it (None: it has none)."""
    directory = Path(model_dir)
    if (directory / "chat_template.jinja").is_file():
        return (directory / "chat_template.jinja").read_text(encoding="utf-8")
    for name, key in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        path = directory / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                continue
            if value:
                return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return None


def file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def source_identity(path: Path) -> dict:
    """A data path's identity; a dataset directory by each of its files."""
    if is_dataset_dir(path):
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"path": str(path.resolve()), "files": [file_identity(p) for p in files]}
    return file_identity(path)


@dataclass(frozen=True)
class TokenizeSpec:
    """Everything a tokenized dataset depends on; ``key()`` names its cache entry."""

    sources: tuple[str, ...]
    model_dir: str  # whose tokenizer (and, unless chat_template is given, chat template)
    max_length: int
    chat_template: str = ""  # a Jinja file replacing the tokenizer's own
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    skip_bad_lines: bool = False
    max_samples: int = 0
    min_loss_tokens: int = 1
    require_consecutive: bool = False

    def template_text(self) -> str | None:
        if self.chat_template:
            return Path(self.chat_template).expanduser().read_text(encoding="utf-8")
        return own_template(self.model_dir)

    def template_identity(self) -> dict:
        text = self.template_text()
        return {"source": str(Path(self.chat_template).expanduser().resolve()) if self.chat_template else "tokenizer",
                "sha256": _sha(text.encode()) if text is not None else None,
                "kwargs": dict(sorted(self.template_kwargs.items()))}

    def identity(self) -> dict:
        """The JSON a dataset's metadata records and the key hashes."""
        return {"build_version": BUILD_VERSION,
                "sources": [source_identity(Path(p).expanduser()) for p in self.sources],
                "tokenizer": {"model_dir": str(Path(self.model_dir).expanduser().resolve()),
                              "sha256": tokenizer_hash(Path(self.model_dir).expanduser())},
                "chat_template": self.template_identity(),
                "max_length": self.max_length,
                "options": {"skip_bad_lines": self.skip_bad_lines, "max_samples": self.max_samples,
                            "min_loss_tokens": self.min_loss_tokens,
                            "require_consecutive": self.require_consecutive}}

    def key(self) -> str:
        """24 hex digits over the identity, less where the tokenizer lives (a copied model is the same)."""
        ident = self.identity()
        ident["tokenizer"] = {"sha256": ident["tokenizer"]["sha256"]}
        return _sha(json.dumps(ident, sort_keys=True).encode())[:24]


def mismatches(recorded: Mapping[str, Any], *, tokenizer_sha: str, template_sha: str | None,
               max_length: int) -> list[str]:
    """How a prepared dataset's metadata disagrees with a run (tokenizer, template, max_length)."""
    out = []
    if recorded["tokenizer"]["sha256"] != tokenizer_sha:
        out.append(f"it was tokenized with another tokenizer ({recorded['tokenizer']['model_dir']}, "
                   f"sha256 {recorded['tokenizer']['sha256'][:12]}) than the target's (sha256 {tokenizer_sha[:12]})")
    if template_sha is not None and recorded["chat_template"]["sha256"] != template_sha:
        out.append(f"it was rendered with another chat template ({recorded['chat_template']['source']}) than "
                   f"data.chat_template")
    if recorded["max_length"] != max_length:
        out.append(f"it was cut at max_length {recorded['max_length']}, this run asks for {max_length} "
                   f"(set --set data.max_length={recorded['max_length']})")
    return out


def sources_of(paths: str | Path | Sequence[str | Path]) -> tuple[str, ...]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return tuple(str(p) for p in items)
