"""Greedy speculative decoding with the target as verifier, through the engine's interface.

Each round the strategy drafts tokens from the target's features, the target scores the whole
draft in one pass, and the longest prefix that matches the target's own greedy choice is kept,
plus the target's next token. The output is therefore the target's greedy output, token for
token; ``check_lossless`` proves it against the engine's own ``generate``.

With an engine that can decode incrementally (``DecodingEngine``) and ``kv_cache`` on, a round
runs only the newest accepted token and the draft through the target (its KV cache holds the
rest) and then drops the rejected positions from the cache, so a prompt costs time linear in its
length. Otherwise every round re-runs the whole sequence (``eval.kv_cache = false``, or an
engine without sessions), which is quadratic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from specforge.contracts import (
    BatchDecodingEngine,
    DecodingEngine,
    FeatureRequest,
    Sample,
    SampleFeatures,
    Strategy,
    TargetEngine,
    TreeDecodeSession,
    TreeDrafter,
    TreeShape,
)
from specforge.errors import SpecforgeError, UserError
from specforge.evaluation.tree import accepted_path


class LosslessError(SpecforgeError):
    """Speculative output differs from the target's greedy output: a verifier or drafter bug."""


@dataclass
class PromptTrace:
    """One prompt's decoding: tokens produced and, per verification round, drafted/accepted."""

    tokens: list[int]
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _slice(features: SampleFeatures, n: int) -> SampleFeatures:
    """Features of the first ``n`` positions (all positions' tensors share dim 0)."""
    return {k: v[:n] for k, v in features.items()}


def _capture(engine: TargetEngine, ids: Sequence[int], request: FeatureRequest) -> SampleFeatures:
    sample = Sample(sample_id="eval", input_ids=tuple(ids), loss_mask=(0,) * len(ids))
    return engine.capture([sample], request)[0]


class FeatureBuffer:
    """Per-position features of the accepted tokens, grown in place (capacity doubles)."""

    def __init__(self, first: SampleFeatures) -> None:
        self.length = 0
        self._data: dict[str, torch.Tensor] = {}
        self.append(first)

    def append(self, rows: SampleFeatures) -> None:
        n = next(iter(rows.values())).shape[0]
        for name, tensor in rows.items():
            held = self._data.get(name)
            if held is None or self.length + n > held.shape[0]:
                grown = tensor.new_zeros((max(2 * (self.length + n), 16), *tensor.shape[1:]))
                if held is not None:
                    grown[:self.length] = held[:self.length]
                self._data[name] = held = grown
            held[self.length:self.length + n] = tensor
        self.length += n

    def view(self) -> SampleFeatures:
        return {name: t[:self.length] for name, t in self._data.items()}


def _accepted_count(proposal: Sequence[int], target: Sequence[int]) -> int:
    n = 0
    while n < len(proposal) and proposal[n] == target[n]:
        n += 1
    return n


def _append(tokens: list[int], new: Sequence[int], max_new_tokens: int, stops: set[int]) -> None:
    for tok in new:
        if len(tokens) >= max_new_tokens:
            return
        tokens.append(tok)
        if tok in stops:
            return


def speculative_generate(engine: TargetEngine, strategy: Strategy, draft: Any, prompt: Sequence[int],
                         request: FeatureRequest, *, k: int, max_new_tokens: int,
                         stop_ids: Sequence[int] = (), kv_cache: bool = True,
                         tree: TreeShape | None = None) -> PromptTrace:
    """Decode ``prompt`` greedily with drafts from ``strategy``; returns the trace.

    With ``tree`` the strategy drafts trees (``TreeDrafter``) the target verifies in one pass
    with tree attention (``TreeDecodeSession``); ``k`` is then ``tree.num_steps``."""
    req = FeatureRequest(layers=request.layers, last_hidden=request.last_hidden, logits=True)
    with torch.no_grad():
        if tree is not None:
            check_tree_support(engine, strategy)
            return _decode_tree(engine, strategy, draft, list(prompt), req, tree, max_new_tokens, set(stop_ids))
        if kv_cache and isinstance(engine, DecodingEngine):
            return _decode_cached(engine, strategy, draft, list(prompt), req, k, max_new_tokens, set(stop_ids))
        return _decode_recapture(engine, strategy, draft, list(prompt), req, k, max_new_tokens, set(stop_ids))


def decode_groups(engine: TargetEngine, strategy: Strategy, draft: Any, prompts: Sequence[Sequence[int]],
                  request: FeatureRequest, *, k: int, max_new_tokens: int, stop_ids: Sequence[int] = (),
                  kv_cache: bool = True, tree: TreeShape | None = None,
                  batch_size: int = 1) -> Iterator[tuple[list[int], list[PromptTrace]]]:
    """Every prompt decoded speculatively, in groups: (the group's prompt indices, their traces).
    Groups of ``batch_size`` are verified together when the engine can (``BatchDecodingEngine``,
    chains with the KV cache); otherwise each prompt is its own group."""
    together = batch_size > 1 and kv_cache and tree is None and isinstance(engine, BatchDecodingEngine)
    size = batch_size if together else 1
    for start in range(0, len(prompts), size):
        group = list(range(start, min(start + size, len(prompts))))
        if together:
            yield group, speculative_generate_batch(engine, strategy, draft, [prompts[i] for i in group], request,
                                                    k=k, max_new_tokens=max_new_tokens, stop_ids=stop_ids)
        else:
            yield group, [speculative_generate(engine, strategy, draft, prompts[start], request, k=k,
                                               max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                               kv_cache=kv_cache, tree=tree)]


def _decode_cached(engine: DecodingEngine, strategy: Strategy, draft: Any, prompt: list[int],
                   request: FeatureRequest, k: int, max_new_tokens: int, stops: set[int]) -> PromptTrace:
    started = time.perf_counter()
    session = engine.decode_session(request)
    try:
        row = _Decoding(prompt)
        row.start(strategy, draft, session.extend(prompt))
        while not row.done(max_new_tokens, stops):
            cached = session.length
            kept = row.verify(session.extend(row.draft(strategy, draft, k, max_new_tokens)), max_new_tokens, stops)
            session.truncate(cached + kept)  # the rejected draft leaves the cache
    finally:
        session.close()
    row.trace.seconds = time.perf_counter() - started
    return row.trace


def speculative_generate_batch(engine: BatchDecodingEngine, strategy: Strategy, draft: Any,
                               prompts: Sequence[Sequence[int]], request: FeatureRequest, *, k: int,
                               max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[PromptTrace]:
    """``speculative_generate`` (chains, KV cache) for several prompts, verified in one target pass
    per round: each prompt drafts from its own state, then every unfinished prompt's newest token
    and draft run together. Each prompt is charged an equal share of the batch's time."""
    req = FeatureRequest(layers=request.layers, last_hidden=request.last_hidden, logits=True)
    stops = set(stop_ids)
    started = time.perf_counter()
    session = engine.decode_batch_session(req)
    try:
        with torch.no_grad():
            decoding = [_Decoding(list(p)) for p in prompts]
            for row, first in zip(decoding, session.extend([r.prompt for r in decoding])):
                row.start(strategy, draft, first)
            active = [r for r in decoding if not r.done(max_new_tokens, stops)]
            if len(active) < len(decoding):
                session.retain([i for i, r in enumerate(decoding) if r in active])
            while active:
                rounds = [row.draft(strategy, draft, k, max_new_tokens) for row in active]
                kept = [row.verify(rows, max_new_tokens, stops) for row, rows in
                        zip(active, session.extend(rounds))]
                session.keep(kept)
                still = [i for i, row in enumerate(active) if not row.done(max_new_tokens, stops)]
                if len(still) < len(active):
                    session.retain(still)
                    active = [active[i] for i in still]
    finally:
        session.close()
    share = (time.perf_counter() - started) / max(len(prompts), 1)
    for row in decoding:
        row.trace.seconds = share
    return [row.trace for row in decoding]


class _Decoding:
    """One prompt being decoded with a KV cache: its features so far, tokens, trace and the
    strategy's decoding state; a round is ``draft`` (what the target runs), then ``verify``."""

    def __init__(self, prompt: list[int]) -> None:
        self.prompt = prompt
        self.proposal: list[int] = []

    def start(self, strategy: Strategy, draft: Any, first: SampleFeatures) -> None:
        """From the prompt's features: the first token (the target's own) and the draft state."""
        first.setdefault("loss_mask", torch.zeros(len(self.prompt), dtype=torch.long))
        self.buffer = FeatureBuffer(first)
        self.tokens = [int(torch.argmax(first["logits"][-1]))]
        self.trace = PromptTrace(tokens=self.tokens)
        self.state = strategy.begin_decode(draft, self.prompt, self.buffer.view())

    def done(self, max_new_tokens: int, stops: set[int]) -> bool:
        return len(self.tokens) >= max_new_tokens or self.tokens[-1] in stops

    def draft(self, strategy: Strategy, draft: Any, k: int, max_new_tokens: int) -> list[int]:
        """This round's tokens for the target: the newest accepted token, then the draft."""
        accepted_ids = self.prompt + self.tokens
        proposal = [int(t) for t in strategy.propose(draft, self.state, accepted_ids, self.buffer.view(), k)]
        self.proposal = proposal[: max_new_tokens - len(self.tokens)]
        return [accepted_ids[-1], *self.proposal]

    def verify(self, rows: SampleFeatures, max_new_tokens: int, stops: set[int]) -> int:
        """Accept the draft's longest prefix the target agrees with; the positions to keep."""
        rows.setdefault("loss_mask", torch.zeros(1 + len(self.proposal), dtype=torch.long))
        target = torch.argmax(rows["logits"], dim=-1).tolist()
        n = _accepted_count(self.proposal, target)
        self.trace.drafted.append(len(self.proposal))
        self.trace.accepted.append(n)
        _append(self.tokens, [*self.proposal[:n], target[n]], max_new_tokens, stops)
        self.buffer.append(_slice(rows, n + 1))  # the newest token and the accepted draft
        return n + 1


def check_tree_support(engine: TargetEngine, strategy: Strategy) -> None:
    """Tree verification needs a tree drafter and an engine that verifies trees; else one clear line."""
    if not isinstance(strategy, TreeDrafter):
        raise UserError(f"strategy {strategy.name!r} drafts chains, not trees: set eval.topk = 1 (its serving "
                        f"engine verifies a chain)")
    if not isinstance(engine, DecodingEngine):
        raise UserError(f"target engine {type(engine).__name__} cannot decode incrementally, which tree "
                        f"verification needs: use --target-engine hf for tree evaluation, or eval.topk = 1")


def _decode_tree(engine: DecodingEngine, strategy: Strategy, draft: Any, prompt: list[int],
                 request: FeatureRequest, shape: TreeShape, max_new_tokens: int, stops: set[int]) -> PromptTrace:
    """Each round: the strategy drafts a tree, the target scores every node in one pass (the
    newest accepted token first, as the root), the longest path the target agrees with is kept."""
    assert isinstance(strategy, TreeDrafter)
    started = time.perf_counter()
    session = engine.decode_session(request)
    if not isinstance(session, TreeDecodeSession):
        session.close()
        raise UserError(f"target engine {type(engine).__name__} cannot verify trees (its decode session has no "
                        f"extend_tree): set eval.topk = 1")
    try:
        row = _Decoding(prompt)
        row.start(strategy, draft, session.extend(prompt))
        buffer, tokens, trace = row.buffer, row.tokens, row.trace
        while not row.done(max_new_tokens, stops):
            accepted_ids = prompt + tokens
            tree = strategy.propose_tree(draft, row.state, accepted_ids, buffer.view(), shape)
            if len(tree.tokens) > shape.num_draft_tokens - 1 or tree.depth() > shape.num_steps:
                raise RuntimeError(f"strategy {strategy.name!r} drafted a tree of {len(tree.tokens)} nodes and depth "
                                   f"{tree.depth()} for {shape}")
            rows = session.extend_tree([accepted_ids[-1], *tree.tokens], [-1, *(p + 1 for p in tree.parents)])
            rows.setdefault("loss_mask", torch.zeros(1 + len(tree.tokens), dtype=torch.long))
            target = torch.argmax(rows["logits"], dim=-1).tolist()  # target[0]: after the root
            path = accepted_path(tree, target)
            last = path[-1] + 1 if path else 0
            trace.drafted.append(tree.depth())
            trace.accepted.append(len(path))
            _append(tokens, [*(tree.tokens[i] for i in path), target[last]], max_new_tokens, stops)
            kept = [0, *(i + 1 for i in path)]  # the root, then the accepted nodes
            buffer.append({name: t[kept] for name, t in rows.items()})
            session.keep(kept)
    finally:
        session.close()
    trace.seconds = time.perf_counter() - started
    return trace


def _decode_recapture(engine: TargetEngine, strategy: Strategy, draft: Any, prompt: list[int],
                      request: FeatureRequest, k: int, max_new_tokens: int, stops: set[int]) -> PromptTrace:
    started = time.perf_counter()
    features = _capture(engine, prompt, request)
    tokens = [int(torch.argmax(features["logits"][-1]))]
    trace = PromptTrace(tokens=tokens)
    state = strategy.begin_decode(draft, prompt, features)
    while len(tokens) < max_new_tokens and tokens[-1] not in stops:
        accepted_ids = prompt + tokens
        proposal = [int(t) for t in strategy.propose(draft, state, accepted_ids, features, k)]
        proposal = proposal[: max_new_tokens - len(tokens)]
        full = _capture(engine, accepted_ids + proposal, request)
        base = len(accepted_ids) - 1
        target = torch.argmax(full["logits"][base:base + len(proposal) + 1], dim=-1).tolist()
        n = _accepted_count(proposal, target)
        trace.drafted.append(len(proposal))
        trace.accepted.append(n)
        _append(tokens, [*proposal[:n], target[n]], max_new_tokens, stops)
        features = _slice(full, len(prompt) + len(tokens) - 1)
    trace.seconds = time.perf_counter() - started
    return trace


@dataclass(frozen=True)
class EvalResult:
    """What users judge a draft by; ``tau`` = mean accepted draft tokens + 1 per verification.

    ``tokens_per_s`` is speculative decoding's; ``greedy_tokens_per_s`` plain greedy decoding's
    through the same engine, prompt by prompt; ``speedup`` their ratio (0 when not measured).
    """

    tau: float
    per_position_acceptance: list[float]
    tau_from_positions: float
    num_prompts: int
    new_tokens: int
    target_forwards: int
    forwards_saved: int
    tokens_per_s: float
    k: int
    greedy_tokens_per_s: float = 0.0
    speedup: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Counts:
    """The sums an EvalResult is made of, so shares of the prompts (one per rank) add up exactly."""

    rounds: int = 0
    accepted: int = 0
    reached: tuple[int, ...] = ()  # per draft position: rounds that drafted it and accepted all before it
    passed: tuple[int, ...] = ()  # per draft position: rounds that accepted it
    prompts: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    def vector(self, positions: int) -> list[float]:
        pad = positions - len(self.reached)
        return [self.rounds, self.accepted, self.prompts, self.new_tokens, self.seconds,
                *self.reached, *[0] * pad, *self.passed, *[0] * pad]

    @classmethod
    def from_vector(cls, values: Sequence[float], positions: int) -> Counts:
        ints = [round(v) for v in values]
        return cls(ints[0], ints[1], tuple(ints[5:5 + positions]), tuple(ints[5 + positions:5 + 2 * positions]),
                   ints[2], ints[3], float(values[4]))


def count(traces: Sequence[PromptTrace]) -> Counts:
    longest = max((d for t in traces for d in t.drafted), default=0)
    reached = [sum(1 for t in traces for d, a in zip(t.drafted, t.accepted) if d > i and a >= i)
               for i in range(longest)]
    passed = [sum(1 for t in traces for d, a in zip(t.drafted, t.accepted) if d > i and a > i)
              for i in range(longest)]
    return Counts(rounds=sum(len(t.accepted) for t in traces), accepted=sum(sum(t.accepted) for t in traces),
                  reached=tuple(reached), passed=tuple(passed), prompts=len(traces),
                  new_tokens=sum(len(t.tokens) for t in traces), seconds=sum(t.seconds for t in traces))


def result_of(counts: Counts, k: int, greedy_seconds: float = 0.0) -> EvalResult:
    rates = [p / r if r else 0.0 for r, p in zip(counts.reached, counts.passed)]
    product, estimate = 1.0, 1.0
    for r in rates:
        product *= r
        estimate += product
    forwards = counts.rounds + counts.prompts  # one prefill per prompt plus one verification per round
    speed = counts.new_tokens / counts.seconds if counts.seconds else 0.0
    greedy = counts.new_tokens / greedy_seconds if greedy_seconds else 0.0
    return EvalResult(tau=(counts.accepted + counts.rounds) / counts.rounds if counts.rounds else 1.0,
                      per_position_acceptance=rates, tau_from_positions=estimate, num_prompts=counts.prompts,
                      new_tokens=counts.new_tokens, target_forwards=forwards,
                      forwards_saved=counts.new_tokens - forwards, tokens_per_s=speed, k=k,
                      greedy_tokens_per_s=greedy, speedup=speed / greedy if greedy else 0.0)


def summarize(traces: Sequence[PromptTrace], k: int, greedy_seconds: float = 0.0) -> EvalResult:
    return result_of(count(traces), k, greedy_seconds)


def greedy_reference(engine: TargetEngine, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                     stop_ids: Sequence[int] = (), batch_size: int = 1) -> tuple[list[list[int]], float]:
    """The engine's own greedy output, in groups of ``batch_size`` prompts (as speculative
    decoding verified them), and its time."""
    outputs: list[list[int]] = []
    seconds = 0.0
    for start in range(0, len(prompts), batch_size):
        group, shares = greedy_timed(engine, prompts[start:start + batch_size], max_new_tokens, stop_ids)
        outputs += group
        seconds += sum(shares)
    return outputs, seconds


def greedy_timed(engine: TargetEngine, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Sequence[int] = ()) -> tuple[list[list[int]], list[float]]:
    """``greedy_reference`` with each prompt's share of the time, so shares of the prompts have a
    baseline: ``prompts`` go to the engine's ``generate`` together (as speculative decoding
    verified them), and each is charged an equal share."""
    started = time.perf_counter()
    outputs = engine.generate([list(p) for p in prompts], max_new_tokens, stop_ids=stop_ids)
    share = (time.perf_counter() - started) / max(len(prompts), 1)
    return outputs, [share] * len(prompts)


def check_lossless(engine: TargetEngine, prompts: Sequence[Sequence[int]], traces: Sequence[PromptTrace],
                   max_new_tokens: int, stop_ids: Sequence[int] = (), names: Sequence[str] = (),
                   batch_size: int = 1) -> float:
    """Raise LosslessError naming the prompt and position where speculation left the engine's own
    greedy decoding; return how long that greedy decoding took (the speed-up's baseline)."""
    reference, seconds = greedy_reference(engine, prompts, max_new_tokens, stop_ids, batch_size)
    compare_outputs(reference, traces, names)
    return seconds


def compare_outputs(reference: Sequence[Sequence[int]], traces: Sequence[PromptTrace],
                    names: Sequence[str] = ()) -> None:
    for i, (ref, trace) in enumerate(zip(reference, traces)):
        if list(ref) == trace.tokens:
            continue
        pos = next((j for j, (a, b) in enumerate(zip(ref, trace.tokens)) if a != b), min(len(ref), len(trace.tokens)))
        name = names[i] if i < len(names) else f"#{i}"
        raise LosslessError(
            f"prompt {name}: speculative output differs from the target's greedy output at new-token position "
            f"{pos} (greedy {list(ref)[pos:pos + 3]}, speculative {trace.tokens[pos:pos + 3]})")
