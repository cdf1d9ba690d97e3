"""Greedy speculative decoding with the target as verifier, through the engine's interface.

Each round the strategy drafts tokens from the target's features, the target scores the whole
draft in one capture, and the longest prefix that matches the target's own greedy choice is
kept, plus the target's next token. The output is therefore the target's greedy output, token
for token; `check_lossless` proves it against the engine's own ``generate``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from specforge.contracts import FeatureRequest, Sample, SampleFeatures, Strategy, TargetEngine
from specforge.errors import SpecforgeError


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


def speculative_generate(engine: TargetEngine, strategy: Strategy, draft: Any, prompt: Sequence[int],
                         request: FeatureRequest, *, k: int, max_new_tokens: int,
                         stop_ids: Sequence[int] = ()) -> PromptTrace:
    """Decode ``prompt`` greedily with drafts from ``strategy``; returns the trace."""
    started = time.perf_counter()
    req = FeatureRequest(layers=request.layers, last_hidden=request.last_hidden, logits=True)
    stops = set(stop_ids)
    features = _capture(engine, prompt, req)
    tokens = [int(torch.argmax(features["logits"][-1]))]
    trace = PromptTrace(tokens=tokens)
    with torch.no_grad():
        state = strategy.begin_decode(draft, list(prompt), features)
        while len(tokens) < max_new_tokens and tokens[-1] not in stops:
            accepted_ids = list(prompt) + tokens
            proposal = [int(t) for t in strategy.propose(draft, state, accepted_ids, features, k)]
            proposal = proposal[: max_new_tokens - len(tokens)]
            full = _capture(engine, accepted_ids + proposal, req)
            base = len(accepted_ids) - 1
            target = torch.argmax(full["logits"][base:base + len(proposal) + 1], dim=-1).tolist()
            n = 0
            while n < len(proposal) and proposal[n] == target[n]:
                n += 1
            new = [*proposal[:n], target[n]]
            trace.drafted.append(len(proposal))
            trace.accepted.append(n)
            for tok in new:
                if len(tokens) >= max_new_tokens:
                    break
                tokens.append(tok)
                if tok in stops:
                    break
            features = _slice(full, len(prompt) + len(tokens) - 1)
    trace.seconds = time.perf_counter() - started
    return trace


@dataclass(frozen=True)
class EvalResult:
    """What users judge a draft by; ``tau`` = mean accepted draft tokens + 1 per verification."""

    tau: float
    per_position_acceptance: list[float]
    tau_from_positions: float
    num_prompts: int
    new_tokens: int
    target_forwards: int
    forwards_saved: int
    tokens_per_s: float
    k: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(traces: Sequence[PromptTrace], k: int) -> EvalResult:
    rounds = sum(len(t.accepted) for t in traces)
    accepted = sum(sum(t.accepted) for t in traces)
    longest = max((d for t in traces for d in t.drafted), default=0)
    rates = []
    for i in range(longest):
        reached = sum(1 for t in traces for d, a in zip(t.drafted, t.accepted) if d > i and a >= i)
        passed = sum(1 for t in traces for d, a in zip(t.drafted, t.accepted) if d > i and a > i)
        rates.append(passed / reached if reached else 0.0)
    product, estimate = 1.0, 1.0
    for r in rates:
        product *= r
        estimate += product
    new_tokens = sum(len(t.tokens) for t in traces)
    forwards = rounds + len(traces)  # one prefill per prompt plus one verification per round
    seconds = sum(t.seconds for t in traces)
    return EvalResult(tau=(accepted + rounds) / rounds if rounds else 1.0, per_position_acceptance=rates,
                      tau_from_positions=estimate, num_prompts=len(traces), new_tokens=new_tokens,
                      target_forwards=forwards, forwards_saved=new_tokens - forwards,
                      tokens_per_s=new_tokens / seconds if seconds else 0.0, k=k)


def check_lossless(engine: TargetEngine, prompts: Sequence[Sequence[int]], traces: Sequence[PromptTrace],
                   max_new_tokens: int, stop_ids: Sequence[int] = (), names: Sequence[str] = ()) -> None:
    """Raise LosslessError naming the prompt and position where speculation left greedy decoding."""
    reference = engine.generate(prompts, max_new_tokens, stop_ids=stop_ids)
    for i, (ref, trace) in enumerate(zip(reference, traces)):
        if list(ref) == trace.tokens:
            continue
        pos = next((j for j, (a, b) in enumerate(zip(ref, trace.tokens)) if a != b), min(len(ref), len(trace.tokens)))
        name = names[i] if i < len(names) else f"#{i}"
        raise LosslessError(
            f"prompt {name}: speculative output differs from the target's greedy output at new-token position "
            f"{pos} (greedy {list(ref)[pos:pos + 3]}, speculative {trace.tokens[pos:pos + 3]})")
