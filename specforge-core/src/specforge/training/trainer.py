"""The training loop every topology shares: fetch → collate → loss → optimizer step → feedback.

Topologies differ only in ``fetch`` (read a store, capture now, or wait for a producer); the
trainer owns the optimizer, the schedule, accumulation, DDP/FSDP2, checkpoints and resume.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from specforge.contracts import (
    DataStats,
    LossOutput,
    RunContext,
    SampleFeatures,
    StepContext,
    Strategy,
    TargetInfo,
    TrainResult,
)
from specforge.errors import SpecforgeError
from specforge.faults import kill_point
from specforge.nn import unwrap
from specforge.training import checkpoint, parallel
from specforge.training.best import Best, mark_best, read_best
from specforge.training.distributed import DistContext, all_reduce_sum, barrier
from specforge.training.feedback import MetricsLog, Progress
from specforge.training.precision import apply_to_draft, autocast, resolve_precision
from specforge.training.schedule import lr_factor

log = logging.getLogger(__name__)

Fetch = Callable[[Sequence[int], int], list[SampleFeatures]]  # (sample indices, epoch) -> features
OnStep = Callable[[int, int, Sequence[int]], None]  # (step, epoch, this rank's sample indices of the step)
Evaluator = Callable[[torch.nn.Module, int], dict[str, float]]  # (draft in eval mode, step) -> eval/* metrics


def build_draft(strategy: Strategy, info: TargetInfo, stats: DataStats, device: torch.device,
                warm_start: Path | None = None) -> torch.nn.Module:
    """A fresh draft on ``device``; with ``warm_start`` its extra state and weights are loaded."""
    draft = strategy.build_draft(info, stats)
    if warm_start is not None:
        strategy.load_extra_state(draft, checkpoint.read_state(warm_start)["extra_state"])
        checkpoint.load_weights(draft, warm_start)
    return draft.to(device)


def _seed_everything(seed: int, rank: int) -> None:
    import random

    random.seed(seed * 1_000_003 + rank)
    torch.manual_seed(seed * 1_000_003 + rank)


def _no_grad_sync(model: torch.nn.Module, last_micro: bool) -> contextlib.AbstractContextManager:
    """Skip gradient all-reduce on all but the last micro-step of an accumulation window."""
    if hasattr(model, "no_sync") and not last_micro:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(last_micro)
    return contextlib.nullcontext()


def _to_device(batch: Any, device: torch.device, float_dtype: torch.dtype | None = None) -> Any:
    """``batch`` on ``device``; floating tensors in ``float_dtype`` when given (pure bf16 training)."""
    if isinstance(batch, torch.Tensor):
        if float_dtype is not None and batch.is_floating_point():
            return batch.to(device, float_dtype, non_blocking=True)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, float_dtype) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, float_dtype) for v in batch)
    return batch


def _as_float(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


class _StepAccumulator:
    """Sums one optimizer step's loss and metrics over micro-steps, then reduces over ranks."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.terms_num = 0.0
        self.terms_den = 0.0
        self.uses_terms = False
        self.metrics: dict[str, float] = {}
        self.ratios: dict[str, list[float]] = {}
        self.micro = 0
        self.tokens = 0

    def add(self, out: LossOutput, tokens: int) -> None:
        self.micro += 1
        self.tokens += tokens
        if out.terms is not None:
            self.uses_terms = True
            self.terms_num += _as_float(out.terms[0])
            self.terms_den += _as_float(out.terms[1])
        else:
            self.loss_sum += _as_float(out.loss)
        for k, v in out.metrics.items():
            self.metrics[k] = self.metrics.get(k, 0.0) + _as_float(v)
        for k, (num, den) in out.ratio_metrics.items():
            acc = self.ratios.setdefault(k, [0.0, 0.0])
            acc[0] += _as_float(num)
            acc[1] += _as_float(den)

    def reduce(self, ctx: DistContext) -> tuple[float, dict[str, float], int]:
        metric_keys = sorted(self.metrics)
        ratio_keys = sorted(self.ratios)
        values = [self.loss_sum, self.terms_num, self.terms_den, float(self.tokens)]
        values += [self.metrics[k] / self.micro for k in metric_keys]
        for k in ratio_keys:
            values += self.ratios[k]
        vec = all_reduce_sum(ctx, torch.tensor(values, dtype=torch.float64))
        world = ctx.world_size
        loss = vec[1].item() / max(vec[2].item(), 1e-12) if self.uses_terms else vec[0].item() / (self.micro * world)
        out = {k: vec[4 + i].item() / world for i, k in enumerate(metric_keys)}
        base = 4 + len(metric_keys)
        for i, k in enumerate(ratio_keys):
            num, den = vec[base + 2 * i].item(), vec[base + 2 * i + 1].item()
            out[k] = num / den if den else 0.0
        return loss, out, int(vec[3].item())


def train(run: RunContext, fetch: Fetch, *, on_step: OnStep | None = None,
          on_start: Callable[[int], None] | None = None,
          extra_metrics: Callable[[], dict[str, float]] | None = None,
          evaluator: Evaluator | None = None) -> TrainResult:
    """Train ``run``'s draft on batches from ``fetch`` (see ``RunContext.train``).

    With ``evaluator`` (``training.eval_every`` steps, and the last step) every rank evaluates
    together; a τ above the best so far saves a checkpoint that ``checkpoints/best`` links to.
    """
    ctx, plan, cfg, strategy = run.dist, run.plan(), run.config.training, run.strategy
    total = plan.total_steps
    if total < 1:
        raise SpecforgeError(
            f"{plan.num_samples} samples give no optimizer step with batch {plan.batch_size} x accumulation "
            f"{plan.accumulation} x {plan.world_size} process(es); use more data or a smaller batch")
    _seed_everything(run.config.run.seed, ctx.rank)  # same seed, same run; a resume then restores the saved RNG
    precision = resolve_precision(cfg.precision, ctx.device.type)
    draft = apply_to_draft(build_draft(strategy, run.info, run.stats, ctx.device, warm_start=run.init_draft),
                           precision)
    layers = parallel.draft_layers(strategy, draft)
    model = parallel.wrap(draft, ctx, parallel=cfg.parallel, precision=precision, layers=layers,
                          checkpointing=cfg.activation_checkpointing, strategy_name=strategy.name)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    position = checkpoint.Position(step=0, epoch=0, micro=0)
    if run.resume_from is not None:
        saved = checkpoint.read_state(run.resume_from)
        strategy.load_extra_state(draft, saved["extra_state"])
        position = checkpoint.load(ctx, run.resume_from, model, optimizer)
        log.info("resuming from %s at step %d", run.resume_from, position.step)

    ckpt_root = run.run_dir / "checkpoints"
    metrics_log = MetricsLog(run.run_dir, resume_step=position.step if run.resume_from else None) \
        if ctx.is_main else None
    progress = Progress(total, position.step, enabled=ctx.is_main)
    history: list[dict[str, Any]] = []
    mixed = autocast(precision, ctx.device.type)
    inputs_dtype = torch.bfloat16 if precision == "bf16" else None
    step, last_loss = position.step, checkpoint.last_loss(run.run_dir, position.step)
    last_ckpt: Path | None = run.resume_from
    config_toml = run.config.to_toml()
    contract = run.contract()
    best = read_best(ckpt_root) if run.resume_from is not None else None
    pending_best: Best | None = None  # a better τ measured at this step, marked once its checkpoint exists
    model.train()

    def mark(path: Path) -> None:
        chosen = pending_best if pending_best is not None and pending_best.step == step else None
        if chosen is None and evaluator is None and step == total:
            chosen = Best(step, None, "final")  # nothing measured during training: the final draft
        if chosen is not None:
            mark_best(ckpt_root, path, chosen)

    def save() -> Path:
        pos = checkpoint.Position(step=step, epoch=epoch, micro=micro_index)
        path = checkpoint.save(ctx, ckpt_root, position=pos, model=model, optimizer=optimizer,
                               extra_state=strategy.extra_state(draft), contract=contract,
                               config_toml=config_toml, keep=cfg.keep_checkpoints, on_saved=mark)
        if ctx.is_main:
            run.observe("specforge_on_checkpoint", path=path)
        return path

    epoch, micro_index = position.epoch, position.micro
    if on_start is not None:
        on_start(position.step)
    if step >= total:
        log.info("the run already finished at step %d of %d; nothing left to train", step, total)
    try:
        while step < total and epoch < plan.epochs:
            batches = plan.epoch_batches(epoch, ctx.rank)
            while micro_index + plan.accumulation <= len(batches) and step < total:
                window = batches[micro_index:micro_index + plan.accumulation]
                started = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_ratio)
                acc = _StepAccumulator()
                for m, indices in enumerate(window):
                    features = fetch(indices, epoch)
                    batch = _to_device(strategy.collate(features), ctx.device, inputs_dtype)
                    step_ctx = StepContext(step=step, total_steps=total, micro_step=m, accumulation=plan.accumulation)
                    with _no_grad_sync(model, last_micro=m == len(window) - 1):
                        with mixed:
                            out = strategy.loss(model, batch, step_ctx)
                        backward = out.terms[0] if out.terms is not None else out.loss / plan.accumulation
                        backward.backward()
                    acc.add(out, sum(int(f["input_ids"].numel()) for f in features))
                if acc.uses_terms:  # one token-weighted mean over every rank and micro-step
                    den = all_reduce_sum(ctx, torch.tensor([acc.terms_den], dtype=torch.float64)).item()
                    scale = ctx.world_size / den if den > 0 else 0.0
                    for p in params:
                        if p.grad is not None:
                            p.grad.mul_(scale)
                grad_norm = _clip(params, cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                micro_index += plan.accumulation
                loss, metrics, tokens = acc.reduce(ctx)
                last_loss = loss
                elapsed = time.perf_counter() - started
                record = {"step": step, "epoch": epoch, "loss": loss,
                          "lr": optimizer.param_groups[0]["lr"], "grad_norm": _as_float(grad_norm),
                          "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0, **metrics}
                if ctx.device.type == "cuda":
                    record["max_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
                if on_step is not None:
                    on_step(step, epoch, [i for w in window for i in w])
                if extra_metrics is not None:
                    record.update(extra_metrics())
                if evaluator is not None and (step % cfg.eval_every == 0 or step == total):
                    record.update(_evaluate(run, evaluator, model, draft, step))
                    if best is None or best.tau is None or record["eval/tau"] > best.tau:
                        best = pending_best = Best(step, record["eval/tau"], "eval/tau")
                if ctx.is_main:
                    assert metrics_log is not None
                    metrics_log.write(record)
                    history.append(record)
                    progress.update(step, loss, record["tokens_per_s"])
                    run.observe("specforge_on_step_end", step=step, metrics=record)
                improved = pending_best is not None and pending_best.step == step
                if step < total and (improved or (cfg.save_every and step % cfg.save_every == 0)):
                    last_ckpt = save()
                kill_point(f"step:{step}", ctx.rank)
            if micro_index + plan.accumulation > len(batches):
                epoch, micro_index = epoch + 1, 0
        if last_ckpt is None or step > position.step:
            last_ckpt = save()
    finally:
        progress.close()
        if metrics_log is not None:
            metrics_log.close()
    parallel.uncheckpoint_layers(layers)  # the trained draft is copied and exported with plain forwards
    trained = _trained_draft(run, model, draft)
    barrier(ctx)
    assert last_ckpt is not None
    return TrainResult(steps=step, final_loss=last_loss, checkpoint=last_ckpt, history=history, draft=trained)


def _evaluate(run: RunContext, evaluator: Evaluator, model: torch.nn.Module, draft: torch.nn.Module,
              step: int) -> dict[str, float]:
    """The evaluator's metrics for the draft as it stands; training's RNG and mode are left as they were."""
    ctx = run.dist
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if run.config.training.parallel == "fsdp" and ctx.distributed:
            metrics = evaluator(_gathered_draft(run, model, draft), step)
        else:
            module = unwrap(model)
            module.eval()
            try:
                metrics = evaluator(module, step)
            finally:
                module.train()
    return metrics


def _gathered_draft(run: RunContext, model: torch.nn.Module, draft: torch.nn.Module) -> torch.nn.Module:
    """A full copy of an FSDP-sharded draft on every rank (collective), for decoding."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    fresh = run.strategy.build_draft(run.info, run.stats)
    run.strategy.load_extra_state(fresh, run.strategy.extra_state(draft))
    fresh.load_state_dict({k: v.detach() for k, v in weights.items()}, strict=False)
    return fresh.to(run.dist.device).eval()


def _clip(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """The global gradient norm, clipped to ``max_norm`` (0: measured, not clipped)."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.clip_grad_norm_(params, float("inf"))


def _trained_draft(run: RunContext, model: torch.nn.Module, draft: torch.nn.Module) -> torch.nn.Module | None:
    """The trained draft with full weights on rank 0 (collective under FSDP), in eval mode.

    Without sharding that is the draft itself. FSDP2 shards its parameters in place, so rank 0
    gets a fresh draft of the same shape holding the gathered weights (nothing is read back).
    """
    if run.config.training.parallel != "fsdp" or not run.dist.distributed:
        return unwrap(model).eval() if run.dist.is_main else None
    weights = checkpoint.trainable_state(model)  # collective: every rank takes part
    if not run.dist.is_main:
        return None
    fresh = run.strategy.build_draft(run.info, run.stats)
    run.strategy.load_extra_state(fresh, run.strategy.extra_state(draft))
    fresh.load_state_dict(weights, strict=False)
    return fresh.eval()
