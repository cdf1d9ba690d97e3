"""τ while training (``training.eval_every``): every rank decodes its share, one reduction sums them.

Every process that holds a target engine (each rank of the offline and online topologies)
decodes every ``world_size``-th held-out prompt with the draft as it stands and the target's
own engine (its dtype; the after-training evaluation may use ``eval.dtype``), then one
``all_reduce`` of the acceptance counts gives every rank the same τ, so no rank waits on
another's decision. Disaggregated trainers hold no engine: trainer rank 0 loads the target for
evaluation once (as its after-training evaluation does) and decodes every prompt while the
other trainers contribute nothing to the same reduction. The lossless check is the
after-training evaluation's job; here only τ and per-position acceptance are measured.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from specforge.evaluation.speculative import Counts, count, decode_groups, result_of
from specforge.training.distributed import all_reduce_sum

log = logging.getLogger(__name__)


def metric_names(k: int) -> list[str]:
    """The metrics one evaluation adds to its step's line in ``metrics.jsonl``."""
    return ["eval/tau", *[f"eval/accept_pos{i + 1}" for i in range(k)], "eval/seconds"]


class TrainingEvaluator:
    """Called by the trainer as ``evaluator(draft, step) -> metrics`` on every rank at once."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self._engine: Any = None
        self._own_engine = False
        self._plan: Any = None

    @property
    def every(self) -> int:
        return self.run.config.training.eval_every

    def _prepare(self) -> None:
        from specforge.run.assemble import build_engine
        from specforge.run.evaluate import plan_eval

        run = self.run
        self._engine = run.engine
        if self._engine is None and run.dist.is_main:  # a disaggregated trainer: rank 0 evaluates
            self._engine = build_engine(run.config, run.dist.device)
            self._own_engine = True
        self._plan = plan_eval(run.config, run.info.tokenizer, corpus=run.corpus, strategy=run.strategy)
        shared = "every rank's share" if run.engine is not None else "trainer rank 0"
        log.info("evaluating every %d steps on %d held-out prompts from %s (%s)", self.every,
                 len(self._plan.prompts), self._plan.source, shared)

    def _share(self) -> list[list[int]]:
        if self._engine is None:
            return []
        dist = self.run.dist
        if self.run.engine is None:
            return list(self._plan.prompts)
        return list(self._plan.prompts[dist.rank::dist.world_size])

    def __call__(self, draft: torch.nn.Module, step: int) -> dict[str, float]:
        if self._plan is None:
            self._prepare()
        plan, strategy = self._plan, self.run.strategy
        k = plan.settings.k
        started = time.perf_counter()
        traces = []
        if self._engine is not None:
            info = self._engine.info()
            request = strategy.feature_request(info)
            draft = _in_dtype_of(draft, info.embed_weight)
            for _, decoded in decode_groups(self._engine, strategy, draft, self._share(), request, k=k,
                                            max_new_tokens=plan.settings.max_new_tokens, stop_ids=plan.stops,
                                            kv_cache=plan.settings.kv_cache, tree=plan.settings.tree,
                                            batch_size=plan.settings.batch_size):
                traces += decoded
        counts = count(traces)
        if len(counts.reached) > k:
            raise RuntimeError(f"strategy {strategy.name!r} drafted {len(counts.reached)} tokens when asked for {k}")
        vector = torch.tensor(counts.vector(k), dtype=torch.float64)
        total = Counts.from_vector(all_reduce_sum(self.run.dist, vector).tolist(), k)
        result = result_of(total, k)
        metrics = {"eval/tau": result.tau}
        positions = list(result.per_position_acceptance) + [0.0] * (k - len(result.per_position_acceptance))
        metrics.update({f"eval/accept_pos{i + 1}": rate for i, rate in enumerate(positions)})
        metrics["eval/seconds"] = time.perf_counter() - started
        return metrics

    def close(self) -> None:
        if self._own_engine and self._engine is not None:
            self._engine.close()
        self._engine = None



def _in_dtype_of(draft: torch.nn.Module, reference: torch.Tensor | None) -> torch.nn.Module:
    """``draft`` itself when it matches the target's dtype and device, else a converted copy
    (bf16-mixed training keeps float32 weights; the draft being trained is never changed)."""
    import copy

    if reference is None:
        return draft
    first = next(iter(draft.parameters()), None)
    if first is None or (first.dtype == reference.dtype and first.device == reference.device):
        return draft
    return copy.deepcopy(draft).to(reference.device, reference.dtype)
