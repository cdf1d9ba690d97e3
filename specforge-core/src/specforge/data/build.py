"""Write a tokenized dataset (``tokenized.py``) from raw conversations, streamed, in bounded memory.

Conversations flow from the reader through the tokenizer into shards of ``SHARD_TOKENS``
tokens; only the current shard, the statistics (constant size) and an 8-byte hash per sample
id are held. Duplicate ids are found from those hashes once everything is written (a second,
parse-only pass names the lines); with ``skip_bad_lines`` the later copies are left out of the
dataset's usable samples (``excluded``), otherwise the build fails naming both lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from specforge.data.errors import DataError
from specforge.data.identity import TokenizeSpec
from specforge.data.loading import _renderer
from specforge.data.loss_mask import require_fast_tokenizer
from specforge.data.parallel import auto_workers, tokenize_parallel
from specforge.data.reader import BadLine, LineSink, as_paths, duplicate_reason, read_conversations
from specforge.data.sources import RecordReader
from specforge.data.stats import StatsAccumulator, counts_to_json
from specforge.data.tokenize import Tally, tokenize_stream
from specforge.data.tokenized import COUNTS, FORMAT, META, SHARD_TOKENS, VERSION, ShardWriter, TokenizedDataset

log = logging.getLogger(__name__)


def id_hash(sample_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest(), "little")


def build_tokenized(spec: TokenizeSpec, tokenizer: Any, out_dir: Path, *, shard_tokens: int = SHARD_TOKENS,
                    progress: bool = True, workers: int = 0) -> TokenizedDataset:
    """Tokenize ``spec.sources`` into ``out_dir`` (which must be empty or new); returns the dataset.

    ``workers`` processes tokenize (``parallel.py``; 0: one per CPU for corpora over 8 MiB); the
    dataset written is the same for any number."""
    if spec.max_length < 1:
        raise DataError(f"max_length must be at least 1, got {spec.max_length}")
    files = as_paths(list(spec.sources))
    require_fast_tokenizer(tokenizer)
    renderer = _renderer(tokenizer, spec.chat_template or None, spec.template_kwargs)
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = LineSink(spec.skip_bad_lines)
    tally = Tally()
    stats = StatsAccumulator()
    hashes = array("Q")  # one per written sample, in order
    shards: list[dict] = []
    writer = ShardWriter()
    started = time.perf_counter()
    bar = _progress_bar(progress)

    def flush() -> None:
        nonlocal writer
        if writer.num_samples:
            name = f"shard-{len(shards):05d}.safetensors"
            writer.write(out_dir / name)
            shards.append({"file": name, "num_samples": writer.num_samples, "num_tokens": writer.num_tokens})
            writer = ShardWriter()

    limits = {"max_length": spec.max_length, "min_loss_tokens": spec.min_loss_tokens,
              "require_consecutive": spec.require_consecutive}
    conversations = read_conversations(files, sink, dedupe=False)
    workers = auto_workers(workers, sum(RecordReader(f).total for f in files))
    if workers > 1:
        log.info("tokenizing with %d worker processes", workers)
        outcomes = tokenize_parallel(conversations, tokenizer, template=renderer.chat_template,
                                     template_kwargs=renderer.template_kwargs, sink=sink, workers=workers,
                                     limits=limits)
    else:
        outcomes = tokenize_stream(conversations, tokenizer, renderer, sink, **limits)
    for outcome in outcomes:
        tally.add(outcome)
        if bar is not None:
            bar.update(1)
        if outcome.verdict != "kept":
            continue
        writer.add(outcome.sample)
        stats.add(outcome.sample)
        hashes.append(id_hash(outcome.sample.sample_id))
        if writer.num_tokens >= shard_tokens:
            flush()
        if spec.max_samples and len(hashes) >= spec.max_samples:
            break
    flush()
    if hasattr(outcomes, "close"):
        outcomes.close()  # stops the workers when max_samples ended the read early
    if bar is not None:
        bar.close()
    if not shards:
        report = tally.report(map(str, files), sink)
        raise DataError(f"no usable training samples in {', '.join(report.files)}: "
                        + ("; ".join(report.problems()) or "the files hold no conversations"))
    meta = {"format": FORMAT, "version": VERSION, **spec.identity(), "shards": shards, "excluded": []}
    dataset = TokenizedDataset(out_dir, meta=meta)
    excluded = _duplicates(dataset, hashes, files, sink)
    for position in excluded:
        stats.remove(dataset[position])
    report = tally.report(map(str, files), sink)
    for line in report.problems():
        log.warning("%s", line)
    seconds = time.perf_counter() - started
    meta.update(excluded=excluded, report=report.to_json(), seconds=round(seconds, 3),
                stats={"num_samples": stats.num_samples, "num_tokens": stats.num_tokens,
                       "num_loss_tokens": stats.num_loss_tokens, "corpus_hash": stats.corpus_hash})
    (out_dir / COUNTS).write_text(json.dumps(counts_to_json(stats.loss_token_counts)))
    (out_dir / META).write_text(json.dumps(meta, indent=1))  # last: a dataset without it is unfinished
    log.info("tokenized %d conversations into %d samples (%d tokens) in %.1f s -> %s", tally.conversations,
             stats.num_samples, stats.num_tokens, seconds, out_dir)
    return TokenizedDataset(out_dir)


def _duplicates(dataset: TokenizedDataset, hashes: array, files: list[Path], sink: LineSink) -> list[int]:
    """Positions of later copies of an id (skipped) or a DataError naming the first duplicate line."""
    candidates = _repeated_positions(hashes)
    if not candidates:
        return []
    by_id: dict[str, list[int]] = {}
    for position in sorted({p for group in candidates for p in group}):
        by_id.setdefault(dataset[position].sample_id, []).append(position)
    repeated = {i: ps for i, ps in by_id.items() if len(ps) > 1}  # equal hashes of different ids are not duplicates
    if not repeated:
        return []
    for bad in _duplicate_lines(files, set(repeated)):
        sink.bad(bad.path, bad.line, bad.reason)  # raises unless bad lines are skipped
    return sorted(p for ps in repeated.values() for p in ps[1:])


def _repeated_positions(hashes: array) -> list[list[int]]:
    """Groups of positions whose id hashes are equal (sorting 8 bytes per sample, not the ids)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with the train extra
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        values = [hashes[i] for i in order]
    else:
        h = np.frombuffer(hashes, dtype=np.uint64)
        order_np = np.argsort(h, kind="stable")
        if not (np.diff(h[order_np]) == 0).any():
            return []
        order, values = order_np.tolist(), h[order_np].tolist()
    groups: list[list[int]] = []
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if i - start > 1:
                groups.append(sorted(order[start:i]))
            start = i
    return groups


def _duplicate_lines(files: list[Path], ids: set[str]) -> Iterable[BadLine]:
    """Where each repeated id occurs again after its first line (a parse-only pass over the data)."""
    first: dict[str, str] = {}
    for conv in read_conversations(files, LineSink(skip=True), dedupe=False):
        if conv.conv_id not in ids:
            continue
        if conv.conv_id in first:
            yield BadLine(conv.path, conv.line, duplicate_reason(conv.conv_id, first[conv.conv_id]))
        else:
            first[conv.conv_id] = conv.source


def _progress_bar(enabled: bool) -> Callable | Any:
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(desc="tokenize", unit="conv", dynamic_ncols=True)
