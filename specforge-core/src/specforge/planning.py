"""`specforge run --plan`: what a run would do, checked as far as possible without torch."""

from __future__ import annotations

from typing import Any

from specforge.config import RunConfig
from specforge.contracts import TargetInfo
from specforge.errors import ConfigError

LABELS = {"strategy": "strategy", "target_engine": "target engine", "store": "feature store",
          "topology": "topology"}


def plan_target_info(config: RunConfig) -> TargetInfo:
    """The target's shape from its config.json, or the embedded demo's, without loading weights."""
    if config.target.model:
        from specforge.engines.target_config import target_info_from_config

        return target_info_from_config(config.target.model)
    from specforge.demo.assets import demo_target_info

    return demo_target_info()


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
    """Lines for the terminal. Raises ConfigError when the strategy cannot work on this target."""
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
    try:
        request = strategy.feature_request(info)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    lines.append(f"  {'features':<14} {_features_line(request, info)}")
    t = config.training
    lines.append(f"  {'training':<14} {t.epochs} epoch(s), batch {t.batch_size} x accumulation "
                 f"{t.accumulation} x {t.nproc_per_node} process(es), lr {t.lr}, {t.parallel}")
    lines.append("")
    lines.append("# resolved config (save as run.toml and pass with -c)")
    lines.extend(config.to_toml().rstrip().splitlines())
    return lines
