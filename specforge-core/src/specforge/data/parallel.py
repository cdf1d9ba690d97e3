"""Tokenization across worker processes, in order and in bounded memory.

Rendering a conversation with its chat template is Python (Jinja), so one process tokenizes a
few hundred to a few thousand conversations per second; a million-conversation corpus wants
every core. The parent reads and parses; forked workers (Linux only: they inherit the
tokenizer instead of reloading it, and a fork needs no importable ``__main__``, unlike spawn)
render and tokenize chunks of ``CHUNK`` conversations; results come back in input order, so the
dataset written is byte-identical to a single process's. A worker runs no torch and no Rust
thread pool (``TOKENIZERS_PARALLELISM=false``), which is what makes forking a process that has
them safe. At most ``2 * workers`` chunks are in flight: memory does not grow with the corpus.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from specforge.data.conversations import Conversation
from specforge.data.reader import LineSink
from specforge.data.tokenize import CHUNK, Outcome, chunks, tokenize_stream

AUTO_MIN_BYTES = 8 << 20  # below this a corpus tokenizes faster than workers start
MAX_AUTO_WORKERS = 16

_STATE: dict[str, Any] = {}  # the worker's tokenizer, renderer and limits


def auto_workers(requested: int, source_bytes: int) -> int:
    """``requested`` when > 0; else one per CPU (at most 16) for corpora above ``AUTO_MIN_BYTES``;
    1 where processes cannot be forked (not Linux)."""
    if not sys.platform.startswith("linux"):
        return 1
    if requested > 0:
        return requested
    if source_bytes < AUTO_MIN_BYTES:
        return 1
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


def _init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism


def _work(chunk: list[Conversation]) -> tuple[list[Outcome], list[tuple[str, int, str]]]:
    sink = LineSink(skip=True)  # the parent decides whether a bad line stops the build
    outcomes = list(tokenize_stream(chunk, _STATE["tokenizer"], _STATE["renderer"], sink, **_STATE["limits"]))
    return outcomes, [(b.path, b.line, b.reason) for b in sink.lines]


def tokenize_parallel(conversations: Iterable[Conversation], tokenizer: Any, *, template: str | None,
                      template_kwargs: Mapping[str, Any], sink: LineSink, workers: int,
                      limits: Mapping[str, Any]) -> Iterator[Outcome]:
    """``tokenize_stream`` over ``workers`` processes, outcomes in input order."""
    import multiprocessing

    from specforge.data.chat_template import ChatRenderer

    _STATE.update(tokenizer=tokenizer, renderer=ChatRenderer(tokenizer, template, template_kwargs),
                  limits=dict(limits))  # inherited by the forked workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_init) as pool:
        pending: deque = deque()
        source = chunks(conversations, CHUNK)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < 2 * workers:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                else:
                    pending.append(pool.apply_async(_work, (chunk,)))
            if not pending:
                break
            outcomes, bad = pending.popleft().get()
            for path, line, reason in bad:
                sink.bad(path, line, reason)
            yield from outcomes
        # Workers that finished leave on their own, and the with block's terminate() then signals no
        # one. terminate() alone SIGTERMs every worker: once (1 in ~10 suite runs) a worker outlived
        # its SIGTERM and the join held a test for 20 min; why it did was not pinned down.
        pool.close()
        pool.join()
