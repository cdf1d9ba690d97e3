"""RunConfig: defaults < embedded-demo layer < TOML file < command-line flags < ``--set section.key=value``.

Core sections (``run``, ``target``, ``data``, ``training``, ``eval``, ``export``) are options
dataclasses here; the component sections (``strategy``, ``target_engine``, ``store``,
``topology``) take their keys from the options dataclass the chosen component registered.
Sections are flat (``[strategy]``, never ``[strategy.<name>]``). Everything is strict: unknown
keys, wrong types and out-of-range values (declared with each field) are reported together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from specforge.components import ComponentSpec, FeatureStoreSpec, StrategySpec, TopologySpec
from specforge.contracts import TreeShape
from specforge.devices import DTYPES
from specforge.errors import ConfigError, UserError
from specforge.evaluation.tree import eval_tree
from specforge.options import (
    Options,
    Range,
    build_options,
    dump_toml,
    options_to_dict,
    parse_literal,
    suggest,
    tomllib,
)
from specforge.registry import FIRST_PARTY, Registered, Registry


@dataclass(frozen=True)
class RunSection(Options):
    section: ClassVar[str] = "run"

    name: str = ""
    """Run folder under output_dir; default ``<strategy>-<topology>``."""
    output_dir: str = "runs"
    """Parent folder of every run folder."""
    seed: int = 0
    """Seeds the data order, the draft's initialisation and every random draw of training."""
    strategy: str = ""
    """The draft algorithm (``specforge plugins --kind strategy``)."""
    target_engine: str = "hf"
    """Where target features come from."""
    store: str = ""
    """Feature store; empty: the topology's default (offline -> disk, online -> memory)."""
    topology: str = "offline"
    """How capture and training are placed in processes."""
    overwrite: bool = False
    """Replace a run already in the run folder (it is moved aside to ``<name>.replaced-<time>``)."""
    tensorboard: bool = False
    """Write every metrics.jsonl line as TensorBoard scalars to ``runs/<name>/tensorboard/``
    (needs ``pip install specforge-core[tensorboard]``; checked before anything loads)."""
    demo: bool = False
    """Set by SpecForge when the run uses the embedded demo (no target and no data given)."""


@dataclass(frozen=True)
class TargetSection(Options):
    section: ClassVar[str] = "target"

    model: str = ""
    """A local Hugging Face model directory; empty: the embedded demo target."""
    dtype: str = "float32"
    """float32 | float64 | bfloat16 | float16."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""

    def problems(self) -> list[str]:
        if self.dtype not in DTYPES:
            return [f"target.dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPES)}"]
        return []


@dataclass(frozen=True)
class DataSection(Options):
    section: ClassVar[str] = "data"

    path: str = ""
    """Conversations (JSONL, .jsonl.gz, .jsonl.zst, Parquet, a datasets save_to_disk folder) or a tokenized
    dataset (``specforge prepare-data --output``); empty: the embedded demo data."""
    eval_path: str = ""
    """Held-out prompts for evaluation (conversations JSONL)."""
    eval_holdout: Annotated[float | None, Range(ge=0, note="a fraction below 1, or a count")] = None
    """Samples kept out of training for evaluation, decided by a hash of each sample's id: a fraction in
    [0, 1) or a count >= 1; unset: none when eval_path is given or evaluation is off, else 2% (at least
    1, at most 256)."""
    max_length: Annotated[int, Range(ge=1)] = 512
    """Samples longer than this many tokens are cut."""
    chat_template: str = ""
    """A Jinja template file replacing the tokenizer's own."""
    skip_bad_lines: bool = False
    """Skip (and count) malformed lines instead of stopping at the first."""
    max_samples: Annotated[int, Range(ge=0, note="0 means all")] = 0
    """Use only the first N usable conversations."""
    tokenize_workers: Annotated[int, Range(ge=0, note="0 means one per CPU core for corpora over 8 MiB")] = 0
    """Processes that tokenize raw data (once: the result is cached); any number writes the same dataset."""

    def problems(self) -> list[str]:
        if self.eval_holdout is not None and self.eval_holdout >= 1 and not float(self.eval_holdout).is_integer():
            return [f"data.eval_holdout {self.eval_holdout!r}: a count must be a whole number (or give a "
                    f"fraction below 1)"]
        return []


@dataclass(frozen=True)
class TrainingSection(Options):
    section: ClassVar[str] = "training"

    epochs: Annotated[int, Range(ge=1)] = 1
    """Passes over the data."""
    max_steps: Annotated[int, Range(ge=0, note="0 means the epochs decide")] = 0
    """Stop after this many optimizer steps."""
    batch_size: Annotated[int, Range(ge=1)] = 1
    """Samples per micro-batch, per process."""
    accumulation: Annotated[int, Range(ge=1)] = 1
    """Micro-batches per optimizer step."""
    lr: Annotated[float, Range(gt=0)] = 1e-4
    """Peak learning rate (AdamW)."""
    warmup_ratio: Annotated[float, Range(ge=0, le=1)] = 0.015
    """Fraction of the optimizer steps spent warming the learning rate up linearly."""
    max_grad_norm: Annotated[float, Range(ge=0, note="0 means no clipping")] = 0.5
    """Global gradient-norm clip."""
    weight_decay: Annotated[float, Range(ge=0)] = 0.0
    """AdamW weight decay."""
    save_every: Annotated[int, Range(ge=0, note="0 means only at the end")] = 0
    """Optimizer steps between checkpoints; a final one is always written."""
    keep_checkpoints: Annotated[int, Range(ge=0, note="0 keeps all")] = 2
    """How many of the newest checkpoints to keep (``checkpoints/best`` is kept as well)."""
    eval_every: Annotated[int, Range(ge=0, note="0 means only after training")] = 0
    """Optimizer steps between evaluations during training (τ on the held-out prompts, on every
    rank's share); the best τ's checkpoint is kept as ``checkpoints/best``."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """Data parallelism across processes: ddp, or fsdp (FSDP2: each draft layer, then the root)."""
    precision: Literal["auto", "fp32", "bf16-mixed", "bf16"] = "auto"
    """auto: bf16-mixed on CUDA, fp32 on CPU; bf16-mixed keeps float32 weights and optimizer state."""
    activation_checkpointing: bool = False
    """Recompute the draft layers' activations in backward instead of keeping them (less memory)."""
    nproc_per_node: Annotated[int, Range(ge=1)] = 1
    """Trainer processes on this machine (one per GPU)."""
    nnodes: Annotated[int, Range(ge=1)] = 1
    """Machines in the run; start the same command on each, with its own node_rank."""
    node_rank: Annotated[int, Range(ge=0)] = 0
    """This machine's place among the nnodes (0 hosts the process group's store)."""
    master_addr: str = "127.0.0.1"
    """Address of node 0 every node reaches; node 0 listens on exactly this address."""
    master_port: Annotated[int, Range(ge=0, le=65535, note="0 means any free port, one node only")] = 0
    """Port node 0 listens on for the process group."""
    join_timeout_s: Annotated[float, Range(gt=0)] = 300.0
    """Seconds node 0 waits for the other nodes (and they for node 0) before failing, naming the missing ones."""
    capture_batch_size: Annotated[int, Range(ge=1)] = 8
    """Samples per target forward when capturing features."""
    resume: str = ""
    """Continue exactly from a checkpoint: ``last`` (this run's newest), a run or a checkpoint folder."""
    init_draft: str = ""
    """Warm-start the draft's weights and extra state from a run or checkpoint (new optimizer)."""

    def problems(self) -> list[str]:
        out = []
        if self.node_rank >= self.nnodes:
            out.append(f"training.node_rank {self.node_rank} must be below training.nnodes {self.nnodes}")
        if self.nnodes > 1 and not self.master_port:
            out.append("training.nnodes > 1 needs a fixed --master-port every node uses (e.g. 29500)")
        return out


@dataclass(frozen=True)
class EvalSection(Options):
    section: ClassVar[str] = "eval"

    enabled: bool = True
    """Measure τ before and after training."""
    k: Annotated[int, Range(ge=1)] = 4
    """Draft tokens per verification (block strategies draft up to their block size - 1); with
    ``eval.topk`` > 1 the tree's depth. SGLang's ``--speculative-num-steps``."""
    topk: Annotated[int, Range(ge=1, le=64)] = 1
    """Children expanded per draft node and beams kept per step (SGLang's
    ``--speculative-eagle-topk``); 1 drafts a chain, above 1 a tree (strategies that draft trees only)."""
    num_draft_tokens: Annotated[int, Range(ge=0, le=1024)] = 0
    """Tokens the target verifies per round, the newest accepted token (the tree's root) included
    (SGLang's ``--speculative-num-draft-tokens``); 0: k + 1 for a chain, the whole expansion for a tree."""
    num_prompts: Annotated[int, Range(ge=1)] = 32
    """Held-out prompts to decode."""
    max_new_tokens: Annotated[int, Range(ge=1)] = 48
    """Tokens generated per prompt."""
    dtype: str = ""
    """Target and draft dtype for evaluation; empty: the target's (the demo evaluates in float64)."""
    check_lossless: bool = True
    """Check the speculative output equals the target's own greedy output, token for token (that
    greedy pass, in ``eval.batch_size`` groups, is also the baseline of the measured speed-up)."""
    kv_cache: bool = True
    """Verify drafts incrementally with the target's KV cache (linear in the generated length);
    false re-runs the whole sequence every round (the old, quadratic path)."""
    batch_size: Annotated[int, Range(ge=1, le=1024)] = 8
    """Prompts verified together, one target pass per round for all of them (chains with
    ``eval.kv_cache`` on an engine that batches, like ``hf``; otherwise one by one). τ does not
    depend on it; the speed-up's greedy baseline decodes the same groups through the engine's
    ``generate``. 1: one prompt at a time, as a single-user serving latency."""

    def problems(self) -> list[str]:
        out = []
        if self.dtype and self.dtype not in DTYPES:
            out.append(f"eval.dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPES)} or leave it empty")
        try:
            self.tree()
        except UserError as e:
            out.append(str(e))
        return out

    def tree(self, strategy: Any = None, k: int | None = None) -> TreeShape | None:
        """The draft tree these settings verify (None: a chain), with ``k`` overriding ``eval.k``;
        a UserError for a shape SGLang refuses or a ``strategy`` that drafts chains only."""
        return eval_tree(k or self.k, self.topk, self.num_draft_tokens, strategy)


@dataclass(frozen=True)
class ExportSection(Options):
    section: ClassVar[str] = "export"

    enabled: bool = True
    """Export the trained draft into ``runs/<name>/export``."""
    format: str = ""
    """An export format of the strategy (``specforge plugins`` lists them); empty: its first,
    the one its serving engine loads."""


CORE_SECTIONS: dict[str, type] = {
    "run": RunSection, "target": TargetSection, "data": DataSection,
    "training": TrainingSection, "eval": EvalSection, "export": ExportSection,
}
COMPONENT_SECTIONS: dict[str, str] = {  # config section -> component kind
    "strategy": "strategy", "target_engine": "target_engine",
    "store": "feature_store", "topology": "topology",
}

FLAG_KEYS: dict[str, str] = {  # command-line flag (click dest) -> section.key
    "strategy": "run.strategy", "target_engine": "run.target_engine", "store": "run.store",
    "topology": "run.topology", "target_model": "target.model", "data": "data.path",
    "output_dir": "run.output_dir", "name": "run.name", "resume": "training.resume",
    "init_draft": "training.init_draft", "nproc_per_node": "training.nproc_per_node",
    "overwrite": "run.overwrite", "nnodes": "training.nnodes", "node_rank": "training.node_rank",
    "master_addr": "training.master_addr", "master_port": "training.master_port",
    "tensorboard": "run.tensorboard",
}
SWITCH_FLAGS = frozenset({"overwrite", "tensorboard"})  # on/off flags: absent (False) leaves the config's value


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
    demo_keys: frozenset[str] = frozenset()  # "section.key" values that came from the demo layer

    @property
    def strategy(self) -> Component:
        return self.components["strategy"]

    @property
    def strategy_spec(self) -> StrategySpec:
        spec = self.strategy.spec
        assert isinstance(spec, StrategySpec)
        return spec

    @property
    def export_format(self) -> str:
        """The format exports are written in: the configured one, else the strategy's default."""
        return self.export.format or self.strategy_spec.export_formats[0]

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

    def to_toml(self, *, mark_demo: bool = False) -> str:
        notes: dict[str, dict[str, str]] = {}
        if mark_demo:
            for key in self.demo_keys:
                section, _, name = key.partition(".")
                notes.setdefault(section, {})[name] = "demo"
        return dump_toml(self.sections(), notes)

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
        if "." in name and section in COMPONENT_SECTIONS:
            raise ConfigError(f"--set {item!r}: component sections are flat; write --set {section}."
                              f"{name.rsplit('.', 1)[-1]}={value.strip()}")
        out.setdefault(section, {})[name] = parse_literal(value.strip())
    return out


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
    known = {f.name for f in dataclasses.fields(reg.spec.options)}
    nested = [k for k, v in options.items() if isinstance(v, Mapping) and k not in known]
    if nested:
        raise ConfigError(f"[{section}.{nested[0]}]: component sections are flat; write the keys under "
                          f"[{section}] (or --set {section}.KEY=VALUE)")
    return Component(reg, build_options(reg.spec.options, options, section))


def resolve(registry: Registry, *, config_file: str | Path | None = None,
            flags: Mapping[str, Any] | None = None, sets: Sequence[str] = ()) -> RunConfig:
    """Merge every layer, validate it, and choose the components."""
    from specforge.run.demo import apply_demo_layer, wants_demo

    raw: dict[str, dict[str, Any]] = {}
    if config_file:
        _merge(raw, load_toml(config_file), str(config_file))
    for dest, value in (flags or {}).items():
        if value is None or (value is False and dest in SWITCH_FLAGS):
            continue
        section, _, key = FLAG_KEYS[dest].partition(".")
        raw.setdefault(section, {})[key] = value
    _merge(raw, _parse_sets(sets), "--set")

    demo_keys: frozenset[str] = frozenset()
    if wants_demo(raw):
        demo_keys = apply_demo_layer(raw, registry)
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
    if training.eval_every and not core["eval"].enabled:
        raise ConfigError("training.eval_every evaluates during training, but eval.enabled is false: enable "
                          "evaluation or set training.eval_every = 0")
    if training.resume and run.overwrite:
        raise ConfigError("--resume continues the run in the folder, --overwrite replaces it: use one")
    strategy_spec = components["strategy"].spec
    assert isinstance(strategy_spec, StrategySpec)
    export: ExportSection = core["export"]
    if export.format and export.format not in strategy_spec.export_formats:
        raise ConfigError(f"export.format {export.format!r}: strategy {run.strategy!r} exports "
                          f"{', '.join(map(repr, strategy_spec.export_formats))}; set --set export.format="
                          f"{strategy_spec.export_formats[0]} or leave it empty")
    return RunConfig(run=run, target=core["target"], data=core["data"], training=training,
                     eval=core["eval"], export=export, components=components, demo_keys=demo_keys)
