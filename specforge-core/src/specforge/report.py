"""What a run ends with: the export, eval.json, plot.png, and the τ before → after line."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.job import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    steps: int
    final_loss: float
    checkpoint: Path
    export_dir: Path | None = None
    report: dict | None = None

    @property
    def summary(self) -> str | None:
        from specforge.evaluation.evaluate import summary_line

        return summary_line(self.report) if self.report else None


def _eval_engine(job: Job) -> Any:
    dtype = job.config.eval.dtype or job.config.target.dtype
    if dtype == job.config.target.dtype and job.engine is not None:
        return job.engine, False
    engine = job.config.components["target_engine"].build(model_path=job.config.target.model, dtype=dtype,
                                                           device=str(job.ctx.device))
    return engine, True


def evaluate_before_after(job: Job, checkpoint: Path) -> dict:
    """τ of an untrained draft (same seed) and of the trained one, on held-out prompts."""
    import torch

    from specforge.evaluation.evaluate import (
        EvalSettings,
        evaluate_draft,
        last_metric,
        load_eval_prompts,
        plot,
        stop_ids,
    )
    from specforge.trained import trained_draft

    cfg = job.config
    engine, own = _eval_engine(job)
    try:
        info = engine.info()
        dtype = info.embed_weight.dtype
        source = cfg.data.eval_path or cfg.data.path
        prompts, names = load_eval_prompts(source, info.tokenizer, cfg.eval.num_prompts)
        settings = EvalSettings(k=cfg.eval.k, num_prompts=len(prompts), max_new_tokens=cfg.eval.max_new_tokens,
                                check_lossless=cfg.eval.check_lossless)
        stops = stop_ids(info.tokenizer)
        torch.manual_seed(cfg.run.seed)
        before = job.strategy.build_draft(info, job.stats).to(job.ctx.device, dtype).eval()
        after = trained_draft(job.strategy, info, checkpoint).to(job.ctx.device, dtype)
        results = {}
        for label, draft in (("before", before), ("after", after)):
            results[label] = evaluate_draft(engine, job.strategy, draft, job.request, prompts, names, settings,
                                            stops).to_json()
    finally:
        if own:
            engine.close()
    report = {"strategy": cfg.run.strategy, "k": cfg.eval.k, "prompts": source, "num_prompts": len(prompts),
              "dtype": str(dtype).replace("torch.", ""), "lossless_checked": cfg.eval.check_lossless,
              "tau_estimate_training": last_metric(job.run_dir, "tau_estimate"), **results}
    (job.run_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(job.run_dir, report)
    return report


def finish(job: Job, result: Any) -> RunOutcome:
    """Rank 0, after training: export, evaluate, report."""
    from specforge.export import export_run

    cfg = job.config
    export_dir = None
    if cfg.export.enabled:
        export_dir = export_run(job.run_dir, cfg.export.format).out_dir
    report = evaluate_before_after(job, result.checkpoint) if cfg.eval.enabled else None
    return RunOutcome(run_dir=job.run_dir, steps=result.steps, final_loss=result.final_loss,
                      checkpoint=result.checkpoint, export_dir=export_dir, report=report)
