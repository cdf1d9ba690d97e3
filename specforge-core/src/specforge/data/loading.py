"""The entry points the rest of the core calls: training samples and evaluation prompts."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import DataStats, Sample
from specforge.data.chat_template import ChatRenderer, read_template_file
from specforge.data.conversations import Conversation
from specforge.data.errors import DataError
from specforge.data.loss_mask import require_fast_tokenizer
from specforge.data.reader import LineSink, PathLike, as_paths, read_conversations
from specforge.data.report import DataReport
from specforge.data.stats import compute_stats
from specforge.data.tokenize import CHUNK, Tally, chunks, tokenize_stream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedData:
    """Training samples in seeded order, their statistics, and what was left out."""

    samples: list[Sample]
    stats: DataStats
    report: DataReport


@dataclass(frozen=True)
class Prompt:
    """An evaluation prompt: the conversation before its last assistant reply, ready to generate."""

    sample_id: str
    input_ids: tuple[int, ...]
    reference: str = ""  # the reply the data holds ("" when the line ends with a user turn)
    category: str = ""  # the line's "category" field, if any


@dataclass(frozen=True)
class LoadedPrompts:
    prompts: list[Prompt]
    report: DataReport


def load_samples(path: PathLike | Sequence[PathLike], tokenizer: Any, *, max_length: int, seed: int = 0,
                 chat_template: PathLike | None = None, template_kwargs: Mapping[str, Any] | None = None,
                 skip_bad_lines: bool = False, max_samples: int = 0, min_loss_tokens: int = 1,
                 require_consecutive: bool = False) -> LoadedData:
    """Conversations (any ``sources`` format) -> token ids + loss masks (1 on assistant replies only).

    ``chat_template`` is a Jinja file replacing the tokenizer's own template. Samples longer than
    ``max_length`` tokens are cut. A sample with fewer than ``min_loss_tokens`` trained tokens (or,
    with ``require_consecutive``, no two adjacent ones) is dropped and named in the report.
    ``max_samples`` keeps the first N usable conversations in file order (0: all); the kept
    samples are then shuffled with ``seed``.
    """
    if max_length < 1:
        raise DataError(f"max_length must be at least 1, got {max_length}")
    if min_loss_tokens < 1:
        raise DataError(f"min_loss_tokens must be at least 1 (empty masks are never trained), "
                        f"got {min_loss_tokens}")
    files = as_paths(path)
    require_fast_tokenizer(tokenizer)
    renderer = _renderer(tokenizer, chat_template, template_kwargs)
    sink = LineSink(skip_bad_lines)
    tally = Tally()
    kept: list[Sample] = []
    for outcome in tokenize_stream(read_conversations(files, sink), tokenizer, renderer, sink,
                                   max_length=max_length, min_loss_tokens=min_loss_tokens,
                                   require_consecutive=require_consecutive):
        tally.add(outcome)
        if outcome.verdict == "kept":
            kept.append(outcome.sample)
            if max_samples and len(kept) >= max_samples:
                break
    report = tally.report(map(str, files), sink)
    for line in report.problems():
        logger.warning("%s", line)
    if not kept:
        raise DataError(f"no usable training samples in {', '.join(report.files)}: "
                        + ("; ".join(report.problems()) or "the files hold no conversations"))
    random.Random(seed).shuffle(kept)
    return LoadedData(samples=kept, stats=compute_stats(kept), report=report)


def load_prompts(path: PathLike | Sequence[PathLike], tokenizer: Any, *, max_length: int = 0,
                 chat_template: PathLike | None = None, template_kwargs: Mapping[str, Any] | None = None,
                 skip_bad_lines: bool = False, max_samples: int = 0) -> LoadedPrompts:
    """Evaluation prompts in file order: each conversation without its trailing assistant reply(ies),
    rendered with the generation prompt. Prompts over ``max_length`` tokens (when > 0) are dropped
    and reported; cutting one would break its template."""
    files = as_paths(path)
    renderer = _renderer(tokenizer, chat_template, template_kwargs)
    sink = LineSink(skip_bad_lines)
    prompts: list[Prompt] = []
    too_long: list[str] = []
    conversations = 0
    for chunk in chunks(read_conversations(files, sink), CHUNK):
        rendered = []
        for conv in chunk:
            end = _prompt_end(conv)
            if end == 0:
                sink.bad(conv.path, conv.line, "the conversation has no message before its assistant reply")
                continue
            try:
                text = renderer.render_prompt(conv, end)
            except ValueError as exc:
                sink.bad(conv.path, conv.line, str(exc))
                continue
            reference = conv.messages[end].content if end < len(conv.messages) else ""
            rendered.append((conv, text, reference))
        conversations += len(rendered)
        if not rendered:
            continue
        encoded = tokenizer([text for _, text, _ in rendered], add_special_tokens=False)["input_ids"]
        for (conv, _, reference), ids in zip(rendered, encoded):
            if max_length and len(ids) > max_length:
                too_long.append(conv.conv_id)
                continue
            prompts.append(Prompt(conv.conv_id, tuple(ids), reference, conv.category))
            if max_samples and len(prompts) >= max_samples:
                break
        if max_samples and len(prompts) >= max_samples:
            break
    report = DataReport(files=tuple(map(str, files)), conversations=conversations,
                        skipped_lines=tuple(sink.lines), too_long_ids=tuple(too_long))
    for line in report.problems():
        logger.warning("%s", line)
    return LoadedPrompts(prompts=prompts, report=report)


def load_tokenizer(model_dir: PathLike) -> Any:
    """A local Hugging Face tokenizer (never downloads)."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise DataError(f"target model directory {str(directory)!r} does not exist")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load a tokenizer from {str(directory)!r}: {exc}") from None


def _renderer(tokenizer: Any, chat_template: PathLike | None,
              template_kwargs: Mapping[str, Any] | None) -> ChatRenderer:
    text = read_template_file(chat_template) if chat_template else None
    return ChatRenderer(tokenizer, text, template_kwargs)


def _prompt_end(conv: Conversation) -> int:
    end = len(conv.messages)
    while end > 0 and conv.messages[end - 1].role == "assistant":
        end -= 1
    return end
