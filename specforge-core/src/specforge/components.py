"""What a plugin registers: a name, a summary, an options dataclass and a lazy factory.

Registration must stay cheap: the factory is a ``"module:attr"`` string imported only when the
component is chosen, so listing plugins and planning a run never import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from specforge.contracts import API_VERSION


@dataclass(frozen=True)
class NoOptions:
    """Options of a component that has none."""


@dataclass(frozen=True)
class ComponentSpec:
    """Common part of every registration."""

    kind: ClassVar[str] = "component"

    name: str
    summary: str
    factory: str  # "package.module:attr", imported only when chosen
    options: type = NoOptions  # a dataclass; its fields are the component's config keys
    api_version: int = API_VERSION
    incomplete: str = ""  # non-empty: listed "incomplete: <this>" and refused by `run --plan`

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"{self.kind} name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if ":" not in self.factory:
            raise ValueError(f"{self.kind} {self.name!r}: factory {self.factory!r} must be 'module:attr'")
        if not dataclasses.is_dataclass(self.options):
            raise TypeError(f"{self.kind} {self.name!r}: options must be a dataclass, got {self.options!r}")

    def load(self) -> Any:
        """Import and return the factory (a class or a function)."""
        module_name, _, attr = self.factory.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ImportError(f"{self.kind} {self.name!r}: {module_name} has no attribute {attr!r}") from None


@dataclass(frozen=True)
class StrategySpec(ComponentSpec):
    """A draft algorithm. ``factory(options) -> Strategy``.

    ``export_formats`` are the formats ``Strategy.export`` writes, the first being the default
    (the one its serving engine loads); ``specforge export --format`` is checked against them
    before any work. ``demo`` holds settings for the embedded demo (``{"strategy":
    {"block_size": 8}, "training": {"lr": 1e-3}}``), applied only when the user gives no target
    and no data, and only to keys the user did not set (``run --plan`` marks them ``# demo``).
    """

    kind: ClassVar[str] = "strategy"

    export_formats: tuple[str, ...] = ("hf",)
    demo: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.export_formats or not all(isinstance(f, str) and f for f in self.export_formats):
            raise ValueError(f"strategy {self.name!r}: export_formats must name at least one format")


@dataclass(frozen=True)
class TargetEngineSpec(ComponentSpec):
    """A source of target features. ``factory(options, model_path=..., dtype=..., device=...) -> TargetEngine``."""

    kind: ClassVar[str] = "target_engine"


@dataclass(frozen=True)
class FeatureStoreSpec(ComponentSpec):
    """A feature store. ``factory(options, root=..., namespace=...) -> FeatureStore``.

    The class also has ``from_descriptor(dict)`` to reopen the same store in another process.

    ``cross_process``: another process can open it from ``descriptor()``;
    ``persistent``: features survive the process that wrote them.
    """

    kind: ClassVar[str] = "feature_store"

    cross_process: bool = False
    persistent: bool = False

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(c for c in ("cross_process", "persistent") if getattr(self, c))


@dataclass(frozen=True)
class TopologySpec(ComponentSpec):
    """A way of wiring capture and training into processes. ``factory(options) -> Topology``.

    ``default_store`` is used when the user names none; ``store_requires`` lists the store
    capabilities it cannot work without (checked by ``--plan``).
    """

    kind: ClassVar[str] = "topology"

    default_store: str = "memory"
    store_requires: frozenset[str] = field(default_factory=frozenset)


KINDS: dict[str, type[ComponentSpec]] = {
    cls.kind: cls for cls in (StrategySpec, TargetEngineSpec, FeatureStoreSpec, TopologySpec)
}
"""Component kinds by name, in the order `specforge plugins` lists them."""
