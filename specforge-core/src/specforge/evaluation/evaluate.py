"""Measure a draft's acceptance length on held-out prompts, before and after training."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.contracts import FeatureRequest, Strategy, TargetEngine, TreeShape
from specforge.evaluation.speculative import (
    EvalResult,
    PromptTrace,
    compare_outputs,
    decode_groups,
    greedy_timed,
    summarize,
)
from specforge.progress import PhaseProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    """How one evaluation decodes; ``tree`` None drafts chains of ``k``, else that tree (depth ``k``);
    ``batch_size`` prompts are verified together where the engine can (chains with the KV cache)."""

    k: int
    num_prompts: int
    max_new_tokens: int
    check_lossless: bool = True
    kv_cache: bool = True
    tree: TreeShape | None = None
    batch_size: int = 1

    def to_json(self) -> dict[str, Any]:
        """The draft settings in SGLang's three numbers, for eval.json."""
        t = self.tree
        return {"num_steps": self.k, "topk": t.topk if t else 1,
                "num_draft_tokens": t.num_draft_tokens if t else self.k + 1, "kv_cache": self.kv_cache}


def stop_ids(tokenizer: Any) -> list[int]:
    """End-of-turn ids: the tokenizer's eos and, for ChatML templates, ``<|im_end|>``."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end >= 0:
        ids.add(im_end)
    return sorted(ids)


def load_eval_prompts(path: str, tokenizer: Any, limit: int | None
                      ) -> tuple[list[list[int]], list[str], list[str]]:
    """(ids, names, categories) of the first ``limit`` prompts of ``path`` (None: all); a category
    is the line's optional ``"category"`` field, "" when absent."""
    from specforge.data import load_prompts

    loaded = load_prompts(path, tokenizer)
    prompts = loaded.prompts[:limit]
    return [list(p.input_ids) for p in prompts], [p.sample_id for p in prompts], [p.category for p in prompts]


@dataclass(frozen=True)
class Decoded:
    """Every prompt's speculative trace and, when the lossless check ran, its plain greedy time."""

    traces: list[PromptTrace]
    greedy_seconds: list[float]  # per prompt; empty when the check (and so the baseline) was off
    k: int

    def summary(self, indices: Sequence[int] | None = None) -> EvalResult:
        """The result over the prompts at ``indices`` (all by default): a share sums like the whole."""
        chosen = range(len(self.traces)) if indices is None else indices
        greedy = sum(self.greedy_seconds[i] for i in chosen) if self.greedy_seconds else 0.0
        return summarize([self.traces[i] for i in chosen], self.k, greedy)


def evaluate_draft(engine: TargetEngine, strategy: Strategy, draft: Any, request: FeatureRequest,
                   prompts: Sequence[Sequence[int]], names: Sequence[str], settings: EvalSettings,
                   stops: Sequence[int], phase: str = "eval") -> EvalResult:
    """Decode every prompt speculatively (progress per prompt, as ``phase``), check it is lossless, summarise."""
    return decode_prompts(engine, strategy, draft, request, prompts, names, settings, stops, phase).summary()


def decode_prompts(engine: TargetEngine, strategy: Strategy, draft: Any, request: FeatureRequest,
                   prompts: Sequence[Sequence[int]], names: Sequence[str], settings: EvalSettings,
                   stops: Sequence[int], phase: str = "eval") -> Decoded:
    """``evaluate_draft`` before the summary, so a caller can summarise shares (`specforge bench`).

    Prompts are verified in groups of ``settings.batch_size`` where the engine can. With the
    lossless check on, a group's plain greedy decoding (the same prompts through the engine's
    ``generate``) runs right after its speculative one, so both speeds see the same machine load."""
    bar = PhaseProgress(phase, len(prompts), "prompts", log=log)
    traces: list[PromptTrace] = []
    reference: list[list[int]] = []
    greedy_seconds: list[float] = []
    try:
        for group, decoded in decode_groups(engine, strategy, draft, prompts, request, k=settings.k,
                                            max_new_tokens=settings.max_new_tokens, stop_ids=stops,
                                            kv_cache=settings.kv_cache, tree=settings.tree,
                                            batch_size=settings.batch_size):
            traces += decoded
            if settings.check_lossless:
                output, seconds = greedy_timed(engine, [prompts[i] for i in group], settings.max_new_tokens, stops)
                reference += output
                greedy_seconds += seconds
            bar.update(len(group), **{"τ": f"{summarize(traces, settings.k).tau:.2f}"})
    finally:
        bar.close()
    if settings.check_lossless:
        compare_outputs(reference, traces, names)
    return Decoded(traces, greedy_seconds, settings.k)


def last_metric(run_dir: Path, name: str) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    values = [line[name] for line in lines if name in line]
    return values[-1] if values else None


def plot(run_dir: Path, report: dict) -> Path | None:
    """loss over training steps, τ during training (``training.eval_every``) and before/after, as
    plot.png (when matplotlib is installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no plot.png (pip install specforge-core[report])")
        return None
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    fig, (ax_loss, ax_tau) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([x["step"] for x in lines], [x["loss"] for x in lines], label="loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    steps = [x["step"] for x in lines if "tau_estimate" in x]
    if steps:
        ax_tau.plot(steps, [x["tau_estimate"] for x in lines if "tau_estimate" in x],
                    label="τ estimate (training accuracies)", alpha=0.6)
    measured = [x for x in lines if "eval/tau" in x]
    if measured:
        ax_tau.plot([x["step"] for x in measured], [x["eval/tau"] for x in measured], marker="o", color="C3",
                    label="τ measured during training")
    last = lines[-1]["step"] if lines else 1
    ax_tau.scatter([0, last], [report["before"]["tau"], report["after"]["tau"]], color="C3", zorder=3,
                   label="τ measured (speculative decoding)")
    ax_tau.set_xlabel("optimizer step")
    ax_tau.set_ylabel("acceptance length τ")
    ax_tau.set_title(f"{report['strategy']}, {_draft_label(report)}")
    ax_tau.legend(fontsize=8)
    fig.tight_layout()
    out = run_dir / "plot.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def summary_line(report: dict) -> str:
    return (f"acceptance length τ: before {report['before']['tau']:.2f} → after {report['after']['tau']:.2f} "
            f"(strategy {report['strategy']}, {_draft_label(report)})")


def _draft_label(report: dict) -> str:
    draft = report.get("draft") or {}
    if draft.get("topk", 1) > 1:
        return (f"tree: num_steps={draft['num_steps']}, topk={draft['topk']}, "
                f"num_draft_tokens={draft['num_draft_tokens']}")
    return f"k={report['k']}"
