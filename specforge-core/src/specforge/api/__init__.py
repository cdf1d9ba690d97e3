"""The public plugin API: everything a plugin imports from specforge-core (``specforge.plugin``
re-exports it). Importing it imports no torch.

Torch-side pieces live in submodules, imported when a plugin needs them:
``specforge.api.nn`` (RMSNorm, RoPE, SwiGLU, attention masks), ``specforge.api.stores`` (the
base class and checks every store shares, dtypes), ``specforge.api.engines`` (target
directories, the frozen-target builder), ``specforge.api.export`` (weight checks, file
permissions). Test kits are in ``specforge.testing``. What may change and how is written in
docs/api-stability.md; ``tests/test_api_snapshot.py`` in specforge-core pins every name here.
"""

from __future__ import annotations

import pluggy

from specforge.components import (
    ComponentSpec,
    FeatureStoreSpec,
    NoOptions,
    StrategySpec,
    TargetEngineSpec,
    TopologySpec,
)
from specforge.contracts import (
    API_VERSION,
    MIN_API_VERSION,
    BatchDecodeSession,
    BatchDecodingEngine,
    DataStats,
    DecodeSession,
    DecodingEngine,
    DraftTree,
    FeatureKey,
    FeatureRecord,
    FeatureRequest,
    FeatureStore,
    Launcher,
    LayeredStrategy,
    ListableStore,
    LossOutput,
    PlanningStrategy,
    PlanningTopology,
    ReopenableStore,
    RunContext,
    Sample,
    SampleFeatures,
    SpecialTokens,
    StepContext,
    StoreHealth,
    Strategy,
    TargetEngine,
    TargetInfo,
    TensorSpec,
    Topology,
    TrainResult,
    TreeDecodeSession,
    TreeDrafter,
    TreeShape,
)
from specforge.engines.mask_token import MaskToken, resolve_mask_token
from specforge.errors import ConfigError, PluginError, SpecforgeError, UserError
from specforge.evaluation.tree import topk_tree
from specforge.hookspecs import PROJECT
from specforge.nn import unwrap
from specforge.observe import final_scalars
from specforge.options import (
    Options,
    Range,
    StoreOptions,
    StrategyOptions,
    TargetEngineOptions,
    TopologyOptions,
)
from specforge.topologies.base import TopologyBase

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin module's functions as hook implementations: ``@hookimpl``."""

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "BatchDecodeSession",
    "BatchDecodingEngine",
    "ComponentSpec",
    "ConfigError",
    "DataStats",
    "DecodeSession",
    "DecodingEngine",
    "DraftTree",
    "FeatureKey",
    "FeatureRecord",
    "FeatureRequest",
    "FeatureStore",
    "FeatureStoreSpec",
    "Launcher",
    "LayeredStrategy",
    "ListableStore",
    "LossOutput",
    "MaskToken",
    "NoOptions",
    "Options",
    "PlanningStrategy",
    "PlanningTopology",
    "PluginError",
    "Range",
    "ReopenableStore",
    "RunContext",
    "Sample",
    "SampleFeatures",
    "SpecforgeError",
    "SpecialTokens",
    "StepContext",
    "StoreHealth",
    "StoreOptions",
    "Strategy",
    "StrategyOptions",
    "StrategySpec",
    "TargetEngine",
    "TargetEngineOptions",
    "TargetEngineSpec",
    "TargetInfo",
    "TensorSpec",
    "Topology",
    "TopologyBase",
    "TopologyOptions",
    "TopologySpec",
    "TrainResult",
    "TreeDecodeSession",
    "TreeDrafter",
    "TreeShape",
    "UserError",
    "final_scalars",
    "hookimpl",
    "resolve_mask_token",
    "topk_tree",
    "unwrap",
]
