"""RunConfig: defaults < TOML file < command-line flags < ``--set section.key=value``.

Core sections (``run``, ``target``, ``data``, ``training``, ``eval``) are dataclasses here;
the component sections (``strategy``, ``target_engine``, ``store``, ``topology``) take their
keys from the options dataclass the chosen component registered. Everything is strict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specforge.components import ComponentSpec, FeatureStoreSpec, TopologySpec
from specforge.errors import ConfigError
from specforge.options import build_options, dump_toml, options_to_dict, parse_literal, suggest, tomllib
from specforge.registry import FIRST_PARTY, Registered, Registry


@dataclass(frozen=True)
class RunSection:
    name: str = ""  # run folder under output_dir; default: "<strategy>-<topology>"
    output_dir: str = "runs"
    seed: int = 0
    strategy: str = ""
    target_engine: str = "hf"
    store: str = ""  # empty: the topology's default store
    topology: str = "offline"


@dataclass(frozen=True)
class TargetSection:
    model: str = ""  # a local Hugging Face directory; empty: the embedded demo target
    dtype: str = "float32"
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class DataSection:
    path: str = ""  # conversations JSONL; empty: the embedded demo data
    eval_path: str = ""  # held-out prompts for evaluation
    max_length: int = 512
    chat_template: str = ""  # a Jinja template file; empty: the tokenizer's own
    skip_bad_lines: bool = False
    max_samples: int = 0  # 0: all


@dataclass(frozen=True)
class TrainingSection:
    epochs: int = 1
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 1
    accumulation: int = 1
    lr: float = 1e-4
    warmup_ratio: float = 0.015
    max_grad_norm: float = 0.5
    weight_decay: float = 0.0
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2
    parallel: str = "ddp"  # ddp | fsdp
    nproc_per_node: int = 1
    capture_batch_size: int = 8
    resume: str = ""
    init_draft: str = ""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulation", "nproc_per_node", "capture_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be at least 1")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"training.parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")


@dataclass(frozen=True)
class EvalSection:
    enabled: bool = True
    k: int = 4  # draft tokens per verification (block strategies use their block size)
    num_prompts: int = 32
    max_new_tokens: int = 48
    dtype: str = ""  # empty: the target's dtype (the demo uses float64 so an argmax tie cannot flip)
    check_lossless: bool = True


@dataclass(frozen=True)
class ExportSection:
    enabled: bool = True  # export the final checkpoint into runs/<name>/export
    format: str = "hf"  # hf | sglang (what the strategy supports)


CORE_SECTIONS: dict[str, type] = {
    "run": RunSection, "target": TargetSection, "data": DataSection,
    "training": TrainingSection, "eval": EvalSection, "export": ExportSection,
}
COMPONENT_SECTIONS: dict[str, str] = {  # config section -> component kind
    "strategy": "strategy", "target_engine": "target_engine",
    "store": "feature_store", "topology": "topology",
}
SELECTOR = {"strategy": "strategy", "target_engine": "target_engine",
            "store": "store", "topology": "topology"}  # component section -> key in [run]

FLAG_KEYS: dict[str, str] = {  # command-line flag (click dest) -> section.key
    "strategy": "run.strategy", "target_engine": "run.target_engine", "store": "run.store",
    "topology": "run.topology", "target_model": "target.model", "data": "data.path",
    "output_dir": "run.output_dir", "name": "run.name", "resume": "training.resume",
    "init_draft": "training.init_draft", "nproc_per_node": "training.nproc_per_node",
    "role": "topology.role",
}


@dataclass(frozen=True)
class Component:
    """A chosen component: its registration and its typed options."""

    registered: Registered
    options: Any

    @property
    def spec(self) -> ComponentSpec:
        return self.registered.spec

    @property
    def name(self) -> str:
        return self.registered.spec.name

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Import the factory (the first moment heavy code may load) and call it."""
        return self.spec.load()(self.options, *args, **kwargs)


@dataclass(frozen=True)
class RunConfig:
    """A fully resolved, validated run configuration."""

    run: RunSection
    target: TargetSection
    data: DataSection
    training: TrainingSection
    eval: EvalSection
    export: ExportSection
    components: Mapping[str, Component] = field(default_factory=dict)  # by config section

    @property
    def strategy(self) -> Component:
        return self.components["strategy"]

    @property
    def run_name(self) -> str:
        return self.run.name or f"{self.run.strategy}-{self.run.topology}"

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run_name

    def sections(self) -> dict[str, dict[str, Any]]:
        out = {name: options_to_dict(getattr(self, name)) for name in CORE_SECTIONS}
        for section, comp in self.components.items():
            out[section] = options_to_dict(comp.options)
        return out

    def to_toml(self) -> str:
        return dump_toml(self.sections())

    def replace(self, section: str, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def _merge(base: dict[str, dict[str, Any]], extra: Mapping[str, Any], origin: str) -> None:
    known = list(CORE_SECTIONS) + list(COMPONENT_SECTIONS)
    for section, values in extra.items():
        if section not in known:
            raise ConfigError(f"unknown section [{section}] in {origin}{suggest(section, known)}; "
                              f"known sections: {', '.join(known)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section} in {origin} must be a table, got {values!r}")
        base.setdefault(section, {}).update(values)


def _parse_sets(sets: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set training.lr=3e-4")
        out.setdefault(section, {})[name] = parse_literal(value.strip())
    return out


DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    # The embedded demo is small and short: a higher lr and bigger batches than a real run.
    "training": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.05, "max_grad_norm": 1.0},
    "data": {"max_length": 256},
}


def _apply_demo_defaults(raw: dict[str, dict[str, Any]], registry: Registry, strategy: str | None) -> None:
    """Settings for the embedded demo, under everything the user set (core first, then the strategy's)."""
    layers = [DEMO_DEFAULTS]
    if strategy and strategy in registry.names("strategy"):
        layers.append(getattr(registry.get("strategy", strategy).spec, "demo", {}) or {})
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    for section, values in merged.items():
        target = raw.setdefault(section, {})
        for key, value in values.items():
            target.setdefault(key, value)


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc


def _choose(registry: Registry, kind: str, name: str, options: Mapping[str, Any], section: str) -> Component:
    reg = registry.get(kind, name)
    return Component(reg, build_options(reg.spec.options, options, section))


def resolve(registry: Registry, *, config_file: str | Path | None = None,
            flags: Mapping[str, Any] | None = None, sets: Sequence[str] = ()) -> RunConfig:
    """Merge every layer, validate it, and choose the components."""
    raw: dict[str, dict[str, Any]] = {}
    if config_file:
        _merge(raw, load_toml(config_file), str(config_file))
    for dest, value in (flags or {}).items():
        if value is None:
            continue
        section, _, key = FLAG_KEYS[dest].partition(".")
        raw.setdefault(section, {})[key] = value
    _merge(raw, _parse_sets(sets), "--set")

    strategy_name = raw.get("run", {}).get("strategy")
    if not raw.get("target", {}).get("model") and not raw.get("data", {}).get("path"):
        _apply_demo_defaults(raw, registry, strategy_name)
    core = {name: build_options(cls, raw.get(name, {}), name) for name, cls in CORE_SECTIONS.items()}
    run: RunSection = core["run"]

    if not run.strategy:
        installed = registry.names("strategy")
        if not installed:
            first_party = " or ".join(f"pip install {d}" for d in FIRST_PARTY["strategy"].values())
            raise ConfigError(f"no strategy is installed; install one ({first_party}) "
                              "or a third-party specforge plugin")
        raise ConfigError(f"choose a strategy with --strategy (installed: {', '.join(installed)})")

    topology = _choose(registry, "topology", run.topology, raw.get("topology", {}), "topology")
    topo_spec = topology.spec
    assert isinstance(topo_spec, TopologySpec)
    store_name = run.store or topo_spec.default_store
    run = dataclasses.replace(run, store=store_name)
    components = {
        "strategy": _choose(registry, "strategy", run.strategy, raw.get("strategy", {}), "strategy"),
        "target_engine": _choose(registry, "target_engine", run.target_engine,
                                 raw.get("target_engine", {}), "target_engine"),
        "store": _choose(registry, "feature_store", store_name, raw.get("store", {}), "store"),
        "topology": topology,
    }
    store_spec = components["store"].spec
    assert isinstance(store_spec, FeatureStoreSpec)
    missing = topo_spec.store_requires - store_spec.capabilities
    if missing:
        able = [n for n in registry.names("feature_store")
                if topo_spec.store_requires <= registry.get("feature_store", n).spec.capabilities]
        raise ConfigError(
            f"topology {topo_spec.name!r} needs a store that is {' and '.join(sorted(missing))}, "
            f"but store {store_name!r} is not; use --store {' or --store '.join(able) or '<none installed>'}")
    training: TrainingSection = core["training"]
    if training.resume and training.init_draft:
        raise ConfigError("--resume continues a run, --init-draft starts a new one from weights: use one")
    return RunConfig(run=run, target=core["target"], data=core["data"], training=training,
                     eval=core["eval"], export=core["export"], components=components)
