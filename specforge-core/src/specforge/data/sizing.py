"""How many tokens a run trains on and how many bytes their features take, before anything is captured.

Torch-free and transformers-free (``run --plan`` calls it). The token count is exact when the
tokenized dataset exists (a prepared one, or the run's cache entry): its metadata says it. Else
it is an estimate, labelled so: the first ``SAMPLE`` conversations are rendered (Jinja, as
transformers would, best effort) and tokenized with the ``tokenizers`` library from the target's
``tokenizer.json``, cut at ``max_length``; their mean is scaled by the corpus's conversation count
(exact for Parquet and datasets folders, counted for plain JSONL up to ``COUNT_LINES_UP_TO``
bytes, else scaled from the bytes the sample took).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import ITEMSIZE, FeatureRequest, TargetInfo
from specforge.data.conversations import parse_conversation
from specforge.data.identity import TokenizeSpec
from specforge.data.sources import RecordReader

SAMPLE = 200
COUNT_LINES_UP_TO = 8 << 30
ID_AND_MASK_BYTES = 16  # input_ids and loss_mask, int64 each, stored with every sample's features
PER_SAMPLE_BYTES = 1024  # a disk-store file's safetensors header plus its manifest line, about


@dataclass(frozen=True)
class FeatureCost:
    """What one token's features cost in the store."""

    floats_per_token: int
    float_dtype: str
    bytes_per_token: int

    def total(self, num_tokens: int, num_samples: int) -> int:
        return self.bytes_per_token * num_tokens + PER_SAMPLE_BYTES * num_samples


def stored_float_dtype(target_dtype: str, store_dtype: str) -> str:
    return target_dtype if store_dtype in ("", "target") else store_dtype


def feature_cost(request: FeatureRequest, info: TargetInfo, *, target_dtype: str, store_dtype: str) -> FeatureCost:
    floats = len(request.layers) * info.hidden_size
    if request.last_hidden:
        floats += info.hidden_size
    if request.logits:
        floats += info.vocab_size
    dtype = stored_float_dtype(target_dtype, store_dtype)
    return FeatureCost(floats, dtype, floats * ITEMSIZE[dtype] + ID_AND_MASK_BYTES)


@dataclass(frozen=True)
class CorpusSize:
    """Samples and tokens of a corpus; ``exact`` False for an estimate (``how`` says from what)."""

    num_samples: int
    num_tokens: int
    exact: bool
    how: str

    def label(self) -> str:
        return "" if self.exact else "estimate, "


def size_of_tokenized(meta: Mapping[str, Any], where: str) -> CorpusSize:
    s = meta["stats"]
    return CorpusSize(s["num_samples"], s["num_tokens"], True, where)


def estimate_raw(spec: TokenizeSpec, *, sample: int = SAMPLE) -> CorpusSize:
    """An estimate of a raw corpus's samples and tokens from its first ``sample`` conversations."""
    lengths: list[int] = []
    conversations = 0
    readers = [RecordReader(Path(p).expanduser()) for p in spec.sources]
    total_convs = 0.0
    counter = _token_counter(spec)
    for reader in readers:
        seen = 0
        for record in reader:
            if record.error is not None:
                continue
            try:
                _, messages, tools = parse_conversation(record.obj)
            except ValueError:
                continue
            seen += 1
            if len(lengths) < sample:
                lengths.append(min(counter(messages, tools), spec.max_length))
            if seen >= sample:
                break
        conversations += seen
        total_convs += _conversations_in(reader, seen)
    if spec.max_samples:
        total_convs = min(total_convs, spec.max_samples)
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    how = (f"from the first {len(lengths)} conversations, {counter.how}; "
           f"{round(total_convs)} conversations{'' if _all_counted(readers) else ' (scaled from bytes)'}")
    return CorpusSize(round(total_convs), round(mean * total_convs), False, how)


def _all_counted(readers: Sequence[RecordReader]) -> bool:
    return all(r.kind in ("parquet", "hf-dataset") or (r.kind == "jsonl" and r.total <= COUNT_LINES_UP_TO)
               for r in readers)


def _conversations_in(reader: RecordReader, seen: int) -> float:
    if reader.kind in ("parquet", "hf-dataset"):
        return float(reader.rows() or 0)
    if reader.kind == "jsonl" and reader.total <= COUNT_LINES_UP_TO:
        return float(_count_lines(reader.path))
    if reader.consumed >= reader.total or not reader.consumed:
        return float(seen)
    return seen * reader.total / reader.consumed


def _count_lines(path: Path) -> int:
    """Lines (blank ones are rare enough for an estimate), read in 16 MiB blocks."""
    count = 0
    last = b"\n"
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


class _TokenCounter:
    """Tokens of one conversation as the template renders it (best effort, without transformers)."""

    def __init__(self, spec: TokenizeSpec) -> None:
        self.tokenizer = None
        self.template = None
        self.how = "about 4 characters per token (no tokenizers library or tokenizer.json)"
        file = Path(spec.model_dir).expanduser() / "tokenizer.json"
        try:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(file)) if file.is_file() else None
        except ImportError:
            pass
        text = spec.template_text()
        if text:
            self.template = _compile(text)
        if self.tokenizer is not None:
            self.how = "tokenized with tokenizer.json" + (" after the chat template" if self.template else
                                                          " (contents only: the chat template did not render)")

    def __call__(self, messages: Sequence[Any], tools: Sequence[Any]) -> int:
        dicts = [m.to_template_dict() for m in messages]
        text = None
        if self.template is not None:
            try:
                text = self.template.render(messages=dicts, tools=list(tools) or None, add_generation_prompt=False,
                                            bos_token="", eos_token="")
            except Exception:  # a template that needs transformers' extras: count the contents
                text = None
        if text is None:
            text = "\n".join(f"{m['role']}: {m.get('content', '')}" for m in dicts)
        if self.tokenizer is None:
            return max(1, len(text) // 4)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def _token_counter(spec: TokenizeSpec) -> _TokenCounter:
    return _TokenCounter(spec)


def _compile(text: str) -> Any:
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(text)
    except jinja2.TemplateError:
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"
