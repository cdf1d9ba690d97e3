"""The embedded demo, in one place: its settings layer and the assets it substitutes.

With no ``--target-model`` and no ``--data``, a run is the embedded demo: the core's demo
settings and then the chosen strategy's ``StrategySpec.demo`` fill every key the user did not
set (``run --plan`` marks them ``# demo``), and the worker substitutes the demo target, data and
held-out prompts, built once offline into ``SPECFORGE_CACHE_DIR``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specforge.config import RunConfig
    from specforge.contracts import TargetInfo
    from specforge.registry import Registry

log = logging.getLogger(__name__)

DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    # Small and short: a higher lr and bigger batches than a real run; float64 evaluation so that
    # no near-tie can flip an argmax between the speculative and the plain greedy pass.
    "training": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.05, "max_grad_norm": 1.0},
    "data": {"max_length": 256},
    "eval": {"dtype": "float64"},
}


def wants_demo(raw: Mapping[str, Mapping[str, Any]]) -> bool:
    """No target and no data given: the run is the embedded demo."""
    return not raw.get("target", {}).get("model") and not raw.get("data", {}).get("path")


def demo_layer(registry: Registry, strategy: str | None) -> dict[str, dict[str, Any]]:
    """The core's demo settings, then the strategy's own (``StrategySpec.demo``) over them."""
    layers = [DEMO_DEFAULTS]
    if strategy and strategy in registry.names("strategy"):
        layers.append(getattr(registry.get("strategy", strategy).spec, "demo", {}) or {})
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


def apply_demo_layer(raw: dict[str, dict[str, Any]], registry: Registry) -> frozenset[str]:
    """Fill the keys the user did not set; return them as ``section.key`` (for ``--plan``)."""
    raw.setdefault("run", {})["demo"] = True
    filled = set()
    for section, values in demo_layer(registry, raw.get("run", {}).get("strategy")).items():
        target = raw.setdefault(section, {})
        for key, value in values.items():
            if key not in target:
                target[key] = value
                filled.add(f"{section}.{key}")
    return frozenset(filled)


def with_demo_assets(config: RunConfig) -> RunConfig:
    """Fill a missing target, data or held-out path with the demo's (building the assets once)."""
    if config.target.model and config.data.path:
        return config
    from specforge.demo.assets import ensure_demo_assets

    # A first run builds the assets with the threads the process has (the target's training takes up
    # to 2: 137 s instead of 196 s with one, the same bytes); the run itself then uses one.
    assets = ensure_demo_assets()
    if "OMP_NUM_THREADS" not in os.environ:  # tiny models: one thread avoids oversubscribing a small CPU
        import torch

        torch.set_num_threads(1)
    if not config.target.model:
        log.info("no --target-model: using the embedded demo target %s", assets.target_dir)
        config = config.replace("target", model=str(assets.target_dir))
    if not config.data.path:
        log.info("no --data: using the embedded demo conversations, answered by the target itself, %s",
                 assets.regenerated_path)
        config = config.replace("data", path=str(assets.regenerated_path),
                                eval_path=config.data.eval_path or str(assets.heldout_path))
    return config


def demo_heldout_path() -> str | None:
    """The demo's held-out prompts when they are built (``specforge eval`` of a demo export)."""
    from specforge.demo.assets import demo_root, load_demo_assets

    try:
        return str(load_demo_assets(demo_root()).heldout_path)
    except FileNotFoundError:
        return None


def plan_target_info(config: RunConfig) -> TargetInfo:
    """The target's shape from its config.json, or the embedded demo's, without loading weights."""
    if config.target.model:
        from specforge.engines.target_config import target_info_from_config

        return target_info_from_config(config.target.model)
    from specforge.demo.assets import demo_target_info

    return demo_target_info()
