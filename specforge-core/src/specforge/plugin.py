"""The one import a plugin author needs.

    from specforge.plugin import hookimpl, StrategySpec

    @hookimpl
    def specforge_register_strategies(register):
        register(StrategySpec(name="my-algo", summary="...", factory="my_pkg.strategy:MyAlgo",
                              options=MyOptions))
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
    DataStats,
    FeatureKey,
    FeatureRecord,
    FeatureRequest,
    FeatureStore,
    LossOutput,
    Sample,
    StepContext,
    StoreHealth,
    Strategy,
    TargetEngine,
    TargetInfo,
    TensorSpec,
    Topology,
)
from specforge.hookspecs import PROJECT

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "API_VERSION",
    "ComponentSpec",
    "DataStats",
    "FeatureKey",
    "FeatureRecord",
    "FeatureRequest",
    "FeatureStore",
    "FeatureStoreSpec",
    "LossOutput",
    "NoOptions",
    "Sample",
    "StepContext",
    "StoreHealth",
    "Strategy",
    "StrategySpec",
    "TargetEngine",
    "TargetEngineSpec",
    "TargetInfo",
    "TensorSpec",
    "Topology",
    "TopologySpec",
    "hookimpl",
]
