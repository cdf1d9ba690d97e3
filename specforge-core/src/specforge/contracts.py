"""The contracts between the core and its plugins: records and protocols.

Importable without torch. Tensors appear only as ``Any`` ("Tensor" in docs), so `specforge
plugins` and `specforge run --plan` can use every record here before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

API_VERSION = 2
"""The plugin API this core speaks (see docs/api-stability.md for what bumps it)."""

MIN_API_VERSION = 1
"""The oldest plugin API a strategy, engine or store may be written for (topologies: ``API_VERSION``)."""

Tensor = Any  # torch.Tensor, kept symbolic so this module never imports torch.
SampleFeatures = dict  # {name: Tensor}: requested features plus "input_ids" and "loss_mask"


# --------------------------------------------------------------------------- data records


@dataclass(frozen=True)
class Sample:
    """One tokenized conversation: what the target sees and where the draft is trained."""

    sample_id: str
    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(
                f"sample {self.sample_id!r}: {len(self.input_ids)} input ids but "
                f"{len(self.loss_mask)} loss-mask entries"
            )

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass(frozen=True)
class DataStats:
    """Corpus statistics strategies may need (EAGLE3's draft vocabulary) and their provenance."""

    num_samples: int
    num_tokens: int
    num_loss_tokens: int
    corpus_hash: str
    loss_token_counts: Mapping[int, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- target records


@dataclass(frozen=True)
class FeatureRequest:
    """What a strategy needs captured from the target, per sample.

    ``layers`` are 0-based decoder-layer ids meaning "output of layer i" (Hugging Face
    ``hidden_states[i+1]``); the engine concatenates them in this order as feature
    ``"hidden_states"`` [S, len(layers)*H]. ``last_hidden`` adds ``"last_hidden"`` [S, H], the
    lm_head input (after the final norm); ``logits`` adds ``"logits"`` [S, V].
    """

    layers: tuple[int, ...] = ()
    last_hidden: bool = False
    logits: bool = False

    def feature_names(self) -> tuple[str, ...]:
        names = ["input_ids", "loss_mask"]
        if self.layers:
            names.append("hidden_states")
        if self.last_hidden:
            names.append("last_hidden")
        if self.logits:
            names.append("logits")
        return tuple(names)

    def check_layers(self, num_layers: int, *, option: str = "strategy layer ids") -> None:
        """Raise a UserError naming the valid range when a layer id is out of it."""
        bad = [i for i in self.layers if not 0 <= i < num_layers]
        if bad:
            from specforge.errors import ConfigError

            raise ConfigError(
                f"layer ids {bad} are out of range for a target with {num_layers} layers "
                f"(valid: 0..{num_layers - 1}); set {option}"
            )


@dataclass(frozen=True)
class SpecialTokens:
    """The tokenizer's special token ids (None: it has none) and its size.

    ``tokenizer_size`` is ``len(tokenizer)``: embedding rows at or above it are never produced by
    the tokenizer (an "unused embedding row", a valid mask token for block drafters).
    """

    mask: int | None = None
    pad: int | None = None
    eos: int | None = None
    unk: int | None = None
    bos: int | None = None
    tokenizer_size: int | None = None


@dataclass(frozen=True)
class TargetInfo:
    """What a strategy may know about the target before and after it is loaded.

    The shape fields come from the model's config (no torch needed); ``None`` means "unknown"
    (the engine could not tell), and ``require(name)`` returns a field or raises a ``UserError``
    naming it. ``embed_weight``, ``lm_head_weight`` and ``tokenizer`` are filled once loaded
    (``specforge.api.engines.frozen_target_info`` builds the frozen part for every engine).
    """

    model_path: str
    model_type: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    intermediate_size: int | None = None
    rms_norm_eps: float | None = None
    max_position_embeddings: int | None = None
    hidden_act: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    special_tokens: SpecialTokens = field(default_factory=SpecialTokens)
    tokenizer: Any = None
    embed_weight: Tensor = None  # [V, H], frozen
    lm_head_weight: Tensor = None  # [V, H], frozen

    @property
    def mask_token_id(self) -> int | None:
        """The tokenizer's own mask token (see ``specforge.api.resolve_mask_token`` for the fallbacks)."""
        return self.special_tokens.mask

    def require(self, name: str, purpose: str = "") -> Any:
        """The field ``name``, or a UserError saying it is unknown and who needs it."""
        value = getattr(self, name)
        if value is None:
            from specforge.errors import UserError

            who = f" ({purpose})" if purpose else ""
            hint = ("build the draft after the target engine has loaded the model" if name in
                    ("embed_weight", "lm_head_weight", "tokenizer")
                    else f"add {name!r} to {self.model_path}/config.json or use an engine that reports it")
            raise UserError(f"the target's {name} is unknown{who}; {hint}")
        return value


# --------------------------------------------------------------------------- store records


@dataclass(frozen=True)
class FeatureKey:
    """Identity of one sample's features; a new generation never serves stale bytes.

    ``fingerprint`` names everything that decided the bytes (target, engine and dtype, feature
    request, store dtype, the sample's tokens and loss mask); stores keep it with the record,
    and a capture that finds another fingerprint re-captures instead of reusing.
    """

    namespace: str
    sample_id: str
    generation: int = 0
    fingerprint: str = ""

    def path(self) -> str:
        return f"{self.namespace}/{self.sample_id}/g{self.generation}"


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of a stored tensor: enough for a store to move raw bytes."""

    shape: tuple[int, ...]
    dtype: str  # "float32", "bfloat16", "int64", ... (torch dtype name without "torch.")

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        try:
            return self.numel * ITEMSIZE[self.dtype]
        except KeyError:
            raise ValueError(f"unsupported dtype {self.dtype!r}; supported: {', '.join(ITEMSIZE)}") from None


ITEMSIZE: dict[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
    "int8": 1, "uint8": 1, "bool": 1,
}
"""Bytes per element of every dtype a FeatureStore must move, by torch dtype name."""


@dataclass(frozen=True)
class FeatureRecord:
    """Where a sample's features are and what they look like; JSON-safe, holds no tensor."""

    key: FeatureKey
    specs: Mapping[str, TensorSpec]

    @property
    def num_tokens(self) -> int:
        spec = self.specs.get("input_ids")
        return spec.shape[0] if spec else 0

    def to_json(self) -> dict:
        key = {"namespace": self.key.namespace, "sample_id": self.key.sample_id, "generation": self.key.generation}
        if self.key.fingerprint:
            key["fingerprint"] = self.key.fingerprint
        return {"key": key,
                "specs": {n: {"shape": list(s.shape), "dtype": s.dtype} for n, s in self.specs.items()}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> FeatureRecord:
        return cls(
            key=FeatureKey(**obj["key"]),
            specs={n: TensorSpec(tuple(s["shape"]), s["dtype"]) for n, s in obj["specs"].items()},
        )


@dataclass(frozen=True)
class StoreHealth:
    """A store's own view of itself, for progress lines and tests."""

    ok: bool
    resident_samples: int = 0
    resident_bytes: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- training records


@dataclass(frozen=True)
class StepContext:
    """Where training is: completed optimizer steps, the known total, the micro-step."""

    step: int
    total_steps: int
    micro_step: int = 0
    accumulation: int = 1


@dataclass
class LossOutput:
    """A strategy's loss for one micro-batch.

    Either ``loss`` (already normalised for this micro-batch) or ``terms=(numerator,
    denominator)``, which the trainer turns into one mean over all ranks and accumulation
    steps. ``metrics`` are floats or 0-d tensors; ``ratio_metrics`` maps a name to
    (numerator, denominator) reduced globally the same way.
    """

    loss: Tensor = None
    terms: tuple[Tensor, Tensor] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    ratio_metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.loss is None) == (self.terms is None):
            raise ValueError("LossOutput needs exactly one of loss= or terms=(numerator, denominator)")


@dataclass(frozen=True)
class TrainResult:
    """What training returns to the run: steps, the last loss, the final checkpoint, the draft.

    ``draft`` is the trained draft itself (unwrapped, full weights) on global rank 0 and None on
    the other ranks; the run exports and evaluates it without reading anything back.
    """

    steps: int
    final_loss: float
    checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    draft: Any = None


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class Strategy(Protocol):
    """A draft algorithm. Built with its options dataclass: ``factory(options)``.

    Raise ``specforge.api.UserError`` for anything the user must change (an option, a target
    the method cannot serve, a checkpoint that does not fit): it reaches them as one line.
    """

    name: str

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        """Pure and torch-free: `--plan` prints it. Raise UserError for an impossible target."""

    def build_draft(self, info: TargetInfo, stats: DataStats) -> Any:
        """The trainable draft (a torch.nn.Module) for this target and corpus.

        Frozen target weights (embedding, lm_head) are parameters with ``requires_grad=False``
        or non-persistent buffers: checkpoints keep only trainable parameters and persistent
        buffers, and ``build_draft`` recreates the frozen part from ``info``.
        """

    def collate(self, samples: Sequence[SampleFeatures]) -> Any:
        """Pad and stack per-sample features into one batch: a dict of tensors."""

    def loss(self, draft: Any, batch: Any, ctx: StepContext) -> LossOutput:
        """The training loss of one micro-batch (already on the draft's device).

        Run the draft through ``draft(...)`` (its ``__call__``), never by calling submodules
        directly: the trainer may wrap it in DDP or FSDP, which only see the top-level forward.
        """

    def extra_state(self, draft: Any) -> dict:
        """What must survive a checkpoint besides weights (e.g. a vocab mapping)."""

    def load_extra_state(self, draft: Any, state: dict) -> None:
        """Restore ``extra_state``; called before training resumes or warm-starts."""

    def begin_decode(self, draft: Any, prompt_ids: Sequence[int], features: SampleFeatures) -> Any:
        """Decoding state for one prompt; ``features`` are the target's over ``prompt_ids``."""

    def propose(self, draft: Any, state: Any, accepted_ids: Sequence[int],
                features: SampleFeatures, k: int) -> list[int]:
        """Draft tokens continuing ``accepted_ids`` (up to k; a block strategy drafts its block).

        ``accepted_ids`` is every token so far (prompt and verified output); its last token is
        the target's own next token, not yet run through the target, so ``features`` cover
        ``accepted_ids[:-1]`` (same names as in training, unbatched, plus ``"logits"``).
        """

    def export(self, draft: Any, out_dir: Path, fmt: str) -> dict:
        """Write a serving directory (``config.json`` + ``model.safetensors``) in format ``fmt``
        (one of the ``export_formats`` the strategy registered; the core checks that first);
        return info for the ``specforge_check_export`` hooks (at least ``architecture`` and
        ``weights``: name -> shape)."""

    def load_export(self, export_dir: Path, info: TargetInfo) -> Any:
        """Rebuild the draft from an export directory (for ``specforge eval EXPORT``)."""


@runtime_checkable
class PlanningStrategy(Protocol):
    """Optional on a strategy: what ``run --plan`` (and a run, before it loads anything) should check
    and say about this target, torch-free. Raise ``UserError`` for a target the method cannot serve."""

    def plan_notes(self, info: TargetInfo) -> list[str]:
        """Lines for the plan, e.g. ``mask token 151669 (first unused embedding row)``."""


@runtime_checkable
class LayeredStrategy(Protocol):
    """Optional on a strategy: the draft's repeated blocks (decoder layers), for FSDP2 to shard one by
    one and for ``training.activation_checkpointing`` to recompute. Each block's forward must have no
    side effects: with checkpointing it runs again in backward."""

    def draft_layers(self, draft: Any) -> list[Any]: ...


@runtime_checkable
class TargetEngine(Protocol):
    """Where target features come from."""

    def info(self) -> TargetInfo: ...

    def capture(self, samples: Sequence[Sample], request: FeatureRequest) -> list[SampleFeatures]:
        """Per sample, unpadded: the requested features plus input_ids and loss_mask."""

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                 stop_ids: Iterable[int] = ()) -> list[list[int]]:
        """Greedy continuation of each prompt (new tokens only)."""

    def close(self) -> None: ...


@runtime_checkable
class DecodeSession(Protocol):
    """One sequence being decoded with the target's KV cache (see ``DecodingEngine``)."""

    length: int  # tokens the cache holds

    def extend(self, ids: Sequence[int]) -> SampleFeatures:
        """Run ``ids`` after the cached tokens; the request's features and ``"logits"`` for those
        positions only (rows in order), computed with the cache."""

    def truncate(self, length: int) -> None:
        """Forget every cached position from ``length`` on (the rejected part of a draft)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class TreeShape:
    """The draft tree a serving engine verifies, in SGLang's three numbers: ``num_steps``
    (``--speculative-num-steps``, the depth), ``topk`` (``--speculative-eagle-topk``, children
    expanded per node and beams kept per step) and ``num_draft_tokens``
    (``--speculative-num-draft-tokens``: verified tokens per round, the root included)."""

    num_steps: int
    topk: int
    num_draft_tokens: int


@dataclass(frozen=True)
class DraftTree:
    """Drafted tokens as a tree: ``parents[i]`` is the index of node ``i``'s parent (< i), or -1
    for a child of the newest accepted token."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]

    def depth(self) -> int:
        depths: list[int] = []
        for p in self.parents:
            depths.append(1 if p < 0 else depths[p] + 1)
        return max(depths, default=0)


@runtime_checkable
class TreeDrafter(Protocol):
    """Optional on a strategy: draft a tree for tree verification (``eval.topk`` > 1)."""

    def propose_tree(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: SampleFeatures,
                     shape: TreeShape) -> DraftTree:
        """Like ``propose``, a tree of at most ``shape.num_draft_tokens - 1`` nodes and depth
        ``shape.num_steps`` (``specforge.api.topk_tree`` builds SGLang's from a next-token function)."""


@runtime_checkable
class TreeDecodeSession(DecodeSession, Protocol):
    """Optional on a decode session: verify a tree of drafts in one target pass (tree attention)."""

    def extend_tree(self, ids: Sequence[int], parents: Sequence[int]) -> SampleFeatures:
        """Run tree nodes after the cached tokens: node ``i`` attends to the cache and to its
        ancestors (``parents[i]`` < i, -1 for a child of the cached sequence), at position
        ``length + depth``. Features and ``"logits"`` per node, in node order; the cache then
        holds every node until ``keep``."""

    def keep(self, nodes: Sequence[int]) -> None:
        """Keep, of the last ``extend_tree``'s nodes, exactly ``nodes`` (a root-to-node path, in
        order) after the earlier cached tokens; every other node leaves the cache."""


@runtime_checkable
class DecodingEngine(Protocol):
    """Optional on a target engine: incremental verification. Speculative decoding then costs one
    target pass over the new tokens per round instead of re-running the whole sequence."""

    def decode_session(self, request: FeatureRequest) -> DecodeSession: ...


class BatchDecodeSession(Protocol):
    """Several sequences decoded together with one KV cache (see ``BatchDecodingEngine``); row
    ``i`` is the ``i``-th sequence still in the batch."""

    def extend(self, rows: Sequence[Sequence[int]]) -> list[SampleFeatures]:
        """Run ``rows[i]`` after row ``i``'s kept tokens (the first call: each row's prompt), which
        the row then keeps; per row, the request's features and ``"logits"`` for its new tokens only."""

    def keep(self, counts: Sequence[int]) -> None:
        """Row ``i`` keeps only the first ``counts[i]`` tokens of the last ``extend``; the rest leave it."""

    def retain(self, rows: Sequence[int]) -> None:
        """Only the rows ``rows`` (indices into the current batch, in order) stay in the batch."""

    def close(self) -> None: ...


@runtime_checkable
class BatchDecodingEngine(Protocol):
    """Optional on a target engine: incremental verification of several sequences in one target
    pass per round (``eval.batch_size``), which amortises a pass's fixed cost over the batch."""

    def decode_batch_session(self, request: FeatureRequest) -> BatchDecodeSession: ...


@runtime_checkable
class FeatureStore(Protocol):
    """Where features live between capture and training.

    A store belongs to one namespace (given when it is built); keys from another are refused.
    Optional, declared by the protocols below: ``records()`` (``ListableStore``) and, on the
    class, ``from_descriptor(descriptor)`` (``ReopenableStore``; required of a store registered
    with ``cross_process=True``).
    """

    cross_process: bool
    persistent: bool

    def put(self, key: FeatureKey, tensors: Mapping[str, Tensor]) -> FeatureRecord: ...

    def get(self, record: FeatureRecord, names: Iterable[str] | None = None) -> dict: ...

    def put_many(self, items: Iterable[tuple[FeatureKey, Mapping[str, Tensor]]]) -> list[FeatureRecord]: ...

    def get_many(self, records: Iterable[FeatureRecord], names: Iterable[str] | None = None) -> list[dict]: ...

    def delete(self, record: FeatureRecord) -> None: ...

    def exists(self, key: FeatureKey) -> bool: ...

    def health(self) -> StoreHealth: ...

    def descriptor(self) -> dict:
        """JSON that lets another process reopen this same store (see ``ReopenableStore``)."""

    def close(self) -> None: ...


@runtime_checkable
class ListableStore(Protocol):
    """Optional: a store that can list what it holds (an offline run then reuses earlier captures)."""

    def records(self) -> list[FeatureRecord]:
        """Every live record, in the order its sample was first put."""


@runtime_checkable
class ReopenableStore(Protocol):
    """Optional on the store class: reopen the store another process described (``descriptor()``)."""

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> FeatureStore: ...


@runtime_checkable
class RunContext(Protocol):
    """One run in one process, from assembly to finish; what a topology's ``train`` receives.

    Built by the core's lifecycle (``specforge.run``); a topology reads its parts and calls
    ``train`` with how batches are fetched.
    """

    config: Any  # the resolved RunConfig
    dist: Any  # rank, world_size, local_rank, device, is_main, distributed
    run_dir: Path
    engine: TargetEngine | None  # None in processes that only train (disaggregated trainers)
    info: TargetInfo
    samples: list[Sample]
    stats: DataStats
    strategy: Strategy
    request: FeatureRequest
    store: FeatureStore

    def plan(self) -> Any:
        """The deterministic data plan: which sample indices each rank trains on, per epoch."""

    def capture(self, samples: Sequence[Sample], *, progress: bool = True) -> Any:
        """Capture ``samples`` into ``store``, reusing stored features only where identical
        (same fingerprint); returns a summary with ``records`` by sample id."""

    def feature_key(self, sample: Sample, generation: int = 0, sample_id: str | None = None) -> FeatureKey:
        """The store key for ``sample``'s features (with their fingerprint), under ``sample_id``."""

    def train(self, fetch: Callable[[Sequence[int], int], list[SampleFeatures]], *,
              on_step: Callable[[int, int, Sequence[int]], None] | None = None,
              on_start: Callable[[int], None] | None = None,
              extra_metrics: Callable[[], dict[str, float]] | None = None) -> TrainResult:
        """Train with ``fetch(indices, epoch) -> features``; hooks run after each optimizer step
        (step, epoch, this rank's sample indices), before the first step, and per metrics line."""


@runtime_checkable
class Launcher(Protocol):
    """What a topology's ``launch`` may do: start worker processes or run the worker here.

    The core's launcher writes the resolved config once, builds every worker command line
    (``specforge run -c FILE --set ...``, through torchrun when several processes or nodes),
    and owns the run folder decision.
    """

    config: Any  # the resolved RunConfig, with the embedded demo's paths filled in
    run_dir: Path

    def run_workers(self) -> Any:
        """The usual layout: ``nproc_per_node`` trainer processes (torchrun) or this process."""

    def run_here(self, *, engine: bool = True) -> Any:
        """Run the worker lifecycle in this process; ``engine=False`` for a trainer that captures nothing."""

    def assemble(self, *, engine: bool = True) -> RunContext:
        """The run's parts for a process that does not train (rank -1), e.g. a producer."""

    def spawn(self, sets: Sequence[str] = (), *, nproc: int = 1,
              env: Mapping[str, str] | None = None) -> Any:
        """Start ``specforge run`` on this config with extra ``--set`` items: ``nproc`` processes per
        node as one process group. Returns a handle with ``poll()``, ``wait()``, ``stop()`` and
        ``returncode`` like ``subprocess.Popen``."""

    def build_store(self) -> FeatureStore:
        """The run's feature store, built here; ``store_env`` lets spawned processes reopen it."""

    def store_env(self, store: FeatureStore) -> dict[str, str]:
        """Environment for spawned processes: reopen ``store`` instead of building their own."""

    def claim_folder(self) -> None:
        """Decide the run folder now (refuse, resume, or replace as asked), before spawning."""


@runtime_checkable
class PlanningTopology(Protocol):
    """Optional on a topology: lines ``run --plan`` prints about the processes it would start
    (torch-free); raise ``UserError`` for a layout this machine cannot hold."""

    def plan_notes(self, config: Any) -> list[str]: ...


@runtime_checkable
class Topology(Protocol):
    """How capture and training are wired into processes.

    The core calls ``launch`` once in the process the user started, and ``train`` in every
    trainer process with that process's assembled run. ``specforge.api.TopologyBase`` gives
    the usual ``launch``: torchrun for several processes, or train in this one.
    """

    def launch(self, launcher: Launcher) -> Any:
        """Place the run's processes (``launcher.run_workers()`` in the usual case)."""

    def train(self, run: RunContext) -> TrainResult:
        """Capture as this topology does and train: ``run.train(fetch, ...)``."""
