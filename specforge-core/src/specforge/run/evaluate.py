"""Evaluation of a run's draft, one path for `specforge run` (before/after) and `specforge eval`.

Both prepare the same way: an engine in the evaluation dtype (the run's own when the dtype
matches), the held-out prompts, the settings; then ``evaluate_draft`` decodes speculatively and
checks the output is the target's own greedy output.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import Strategy, TargetEngine
from specforge.errors import UserError
from specforge.evaluation.evaluate import Decoded, EvalSettings, decode_prompts, load_eval_prompts, stop_ids
from specforge.evaluation.tree import describe_tree
from specforge.run.folder import Located

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalPlan:
    """What one evaluation decodes: prompts (ids and names), their source, and the settings."""

    prompts: list[list[int]]
    names: list[str]
    source: str
    settings: EvalSettings
    stops: list[int]
    categories: tuple[str, ...] = ()  # per prompt, from a prompts file's "category" fields ("" without)


def eval_dtype(config: RunConfig) -> str:
    return config.eval.dtype or config.target.dtype


def plan_eval(config: RunConfig, tokenizer: Any, *, prompts: str | None = None, k: int | None = None,
              num_prompts: int | None = None, corpus: Any = None, strategy: Any = None) -> EvalPlan:
    """Prompts and settings from the run's config, with the command line's overrides; the draft
    tree (``eval.topk`` > 1) is refused for a ``strategy`` that drafts chains only.

    Without a prompts file (``--prompts``, ``data.eval_path``) the prompts are the held-out split
    of the run's data (``data.eval_holdout``; ``corpus`` when the caller has it open), never
    training samples."""
    from specforge.run.assemble import heldout_prompts

    limit = num_prompts or config.eval.num_prompts
    source = prompts or config.data.eval_path
    categories: list[str] = []
    if source:
        ids, names, categories = load_eval_prompts(source, tokenizer, limit)
    elif config.data.path:
        ids, names, source = heldout_prompts(config, tokenizer, limit, corpus)
    else:
        raise UserError("no prompts to evaluate on: pass --prompts FILE (conversations JSONL; the last "
                        "assistant reply of each line is dropped and generated)")
    if not ids:
        raise UserError(f"{source} holds no usable prompt; pass --prompts FILE with conversations")
    settings = EvalSettings(k=k or config.eval.k, num_prompts=len(ids), max_new_tokens=config.eval.max_new_tokens,
                            check_lossless=config.eval.check_lossless, kv_cache=config.eval.kv_cache,
                            tree=config.eval.tree(strategy, k), batch_size=config.eval.batch_size)
    log.info("evaluation drafts a %s", describe_tree(settings.k, settings.tree))
    return EvalPlan(ids, names, source, settings, stop_ids(tokenizer), tuple(categories))


def engine_for_eval(config: RunConfig, engine: TargetEngine | None, device: Any) -> tuple[TargetEngine, bool]:
    """(engine, built here): the run's engine when its dtype fits, else one in the eval dtype."""
    from specforge.run.assemble import build_engine

    if engine is not None and eval_dtype(config) == config.target.dtype:
        return engine, False
    return build_engine(config, device, eval_dtype(config)), True


def run_evaluation(engine: TargetEngine, strategy: Strategy, draft: Any, plan: EvalPlan, phase: str = "eval") -> dict:
    """Decode every prompt with ``draft`` (moved to the engine's dtype and device) and summarise."""
    return run_decoding(engine, strategy, draft, plan, phase).summary().to_json()


def run_decoding(engine: TargetEngine, strategy: Strategy, draft: Any, plan: EvalPlan, phase: str = "eval") -> Decoded:
    """``run_evaluation`` before the summary: each prompt's trace and greedy time (for shares)."""
    info = engine.info()
    request = strategy.feature_request(info)
    draft = draft.to(info.embed_weight.device if info.embed_weight is not None else "cpu",
                     info.embed_weight.dtype).eval()
    return decode_prompts(engine, strategy, draft, request, plan.prompts, plan.names, plan.settings, plan.stops,
                          phase=phase)


def evaluate_before_after(run: Any, draft: Any) -> dict:
    """τ of an untrained draft (the run's seed) and of the trained one; writes eval.json and plot.png."""
    import copy

    import torch

    from specforge.evaluation.evaluate import last_metric, plot

    cfg = run.config
    engine, own = engine_for_eval(cfg, run.engine, run.dist.device)
    try:
        info = engine.info()
        plan = plan_eval(cfg, info.tokenizer, corpus=run.corpus, strategy=run.strategy)
        torch.manual_seed(cfg.run.seed)
        before = run.strategy.build_draft(info, run.stats)
        after = copy.deepcopy(draft)  # the trained draft stays as it was trained (dtype, device)
        results = {label: run_evaluation(engine, run.strategy, d, plan, phase=f"eval {label} training")
                   for label, d in (("before", before), ("after", after))}
        dtype = str(info.embed_weight.dtype).replace("torch.", "")
    finally:
        if own:
            engine.close()
    report = {"strategy": cfg.run.strategy, "k": plan.settings.k, "draft": plan.settings.to_json(),
              "prompts": plan.source,
              "num_prompts": plan.settings.num_prompts, "dtype": dtype,
              "lossless_checked": plan.settings.check_lossless,
              "tau_estimate_training": last_metric(run.run_dir, "tau_estimate"),
              "best_checkpoint": _best(run.run_dir), **results}
    (run.run_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(run.run_dir, report)
    return report


def _best(run_dir: Path) -> dict | None:
    from specforge.training.best import read_best

    best = read_best(run_dir / "checkpoints")
    return best.to_json() if best is not None else None


@dataclass(frozen=True)
class Opened:
    """A path given to `specforge eval` or `specforge bench`: what it is, its config, its draft."""

    located: Located
    config: RunConfig
    rebuilt: Any  # specforge.run.rebuild.Rebuilt


def open_for_eval(located: Located, *, dtype: str | None = None, **eval_overrides: Any) -> Opened:
    """The run's config (eval dtype and ``eval.<key>`` overrides applied) and its rebuilt draft."""
    from specforge.run.rebuild import config_of, rebuild

    config = config_of(located)
    if dtype:
        eval_overrides["dtype"] = dtype
    if eval_overrides:
        config = config.replace("eval", **eval_overrides)
    rebuilt = rebuild(located, dtype=eval_dtype(config))  # a damaged checkpoint fails before the target loads
    return Opened(located, config, rebuilt)


def export_prompts(located: Located) -> str:
    """The held-out prompts file an export's run used; else a UserError saying to pass one."""
    prompts = (located.marker or {}).get("eval_prompts")
    if not prompts:
        raise UserError(f"the export {located.path} names no held-out prompts (its run had no data.eval_path); "
                        f"pass --prompts FILE: conversations JSONL the draft was not trained on (the last "
                        f"assistant reply of each line is dropped and generated)")
    return prompts


def evaluate_path(path: str | Path, *, prompts: str | None = None, k: int | None = None,
                  num_prompts: int | None = None, dtype: str | None = None, topk: int | None = None,
                  num_draft_tokens: int | None = None) -> dict:
    """`specforge eval`: a run (newest checkpoint), a checkpoint or an export, on held-out prompts;
    ``topk`` / ``num_draft_tokens`` override ``eval.topk`` / ``eval.num_draft_tokens``."""
    from specforge.run.assemble import build_engine
    from specforge.run.folder import locate

    located = locate(path)
    if located.kind == "export" and not prompts:
        prompts = export_prompts(located)
    overrides = {key: value for key, value in (("topk", topk), ("num_draft_tokens", num_draft_tokens))
                 if value is not None}
    opened = open_for_eval(located, dtype=dtype, **overrides)
    config, rebuilt = opened.config, opened.rebuilt
    plan = plan_eval(config, rebuilt.info.tokenizer, prompts=prompts, k=k, num_prompts=num_prompts,
                     strategy=rebuilt.strategy)
    engine = build_engine(config, config.target.device, eval_dtype(config))
    try:
        result = run_evaluation(engine, rebuilt.strategy, rebuilt.draft, plan)
    finally:
        engine.close()
    return {"strategy": config.run.strategy, "draft": plan.settings.to_json(), "prompts": plan.source,
            "dtype": eval_dtype(config),
            "lossless_checked": plan.settings.check_lossless, **result}
