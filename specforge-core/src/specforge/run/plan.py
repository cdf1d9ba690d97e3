"""`specforge run --plan`: what a run would do, checked as far as possible without torch."""

from __future__ import annotations

from typing import Any

from specforge.config import RunConfig
from specforge.contracts import PlanningTopology, TargetInfo
from specforge.evaluation.tree import describe_tree
from specforge.run import preflight
from specforge.run.demo import plan_target_info
from specforge.training.precision import describe_precision

LABELS = {"strategy": "strategy", "target_engine": "target engine", "store": "feature store",
          "topology": "topology"}


def _features_line(request: Any, info: TargetInfo) -> str:
    parts = []
    if request.layers:
        parts.append(f"layers {list(request.layers)} -> hidden_states [S, {len(request.layers) * info.hidden_size}]")
    if request.last_hidden:
        parts.append(f"last_hidden [S, {info.hidden_size}]")
    if request.logits:
        parts.append(f"logits [S, {info.vocab_size}]")
    return "; ".join(parts) or "none"


def describe_plan(config: RunConfig) -> list[str]:
    """Lines for the terminal. Raises a UserError when the strategy cannot work on this target."""
    lines = [f"run {config.run_name!r} -> {config.run_dir}"]
    for section, comp in config.components.items():
        reg = comp.registered
        lines.append(f"  {LABELS[section]:<14} {comp.name:<14} {reg.plugin.distribution or '-'} "
                     f"{reg.plugin.version or ''}".rstrip())
    info = plan_target_info(config)
    source = config.target.model or "embedded demo target (built offline on first use)"
    lines.append(f"  {'target':<14} {source} ({info.model_type}, {info.num_layers} layers, "
                 f"hidden {info.hidden_size}, vocab {info.vocab_size})")
    lines.append(f"  {'data':<14} {config.data.path or 'embedded demo conversations'}")
    strategy = config.strategy.build()
    request = strategy.feature_request(info)
    request.check_layers(info.num_layers)
    notes = preflight.check(config, info, strategy)
    lines.append(f"  {'features':<14} {_features_line(request, info)}")
    lines.extend(f"  {'':<14} {note}" for note in notes)
    t = config.training
    nodes = f" x {t.nnodes} node(s)" if t.nnodes > 1 else ""
    checkpointing = ", activation checkpointing" if t.activation_checkpointing else ""
    lines.append(f"  {'training':<14} {t.epochs} epoch(s), batch {t.batch_size} x accumulation "
                 f"{t.accumulation} x {t.nproc_per_node} process(es){nodes}, lr {t.lr}, {t.parallel}, "
                 f"precision {describe_precision(t.precision, config.target.device)}{checkpointing}")
    topology = config.components["topology"].build()
    if isinstance(topology, PlanningTopology):
        lines.extend(f"  {'processes':<14} {note}" for note in topology.plan_notes(config))
    if config.eval.enabled:
        e = config.eval
        lines.append(f"  {'eval':<14} {e.num_prompts} prompt(s) x {e.max_new_tokens} new tokens, "
                     f"{describe_tree(e.k, e.tree(strategy))}")
    lines.append(f"  {'export':<14} format {config.export_format} (strategy {config.run.strategy} exports "
                 f"{', '.join(config.strategy_spec.export_formats)})")
    lines.append("")
    lines.append("# resolved config (save as run.toml and pass with -c); '# demo': set by the embedded demo")
    lines.extend(config.to_toml(mark_demo=True).rstrip().splitlines())
    return lines
