"""The contracts between the core and its plugins: records and protocols.

Importable without torch. Tensors appear only as ``Any`` ("Tensor" in docs), so `specforge
plugins` and `specforge run --plan` can use every record here before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

API_VERSION = 1
"""The plugin API this core speaks. A component registered for another version is broken."""

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
        """Raise a ValueError naming the valid range when a layer id is out of it."""
        bad = [i for i in self.layers if not 0 <= i < num_layers]
        if bad:
            raise ValueError(
                f"layer ids {bad} are out of range for a target with {num_layers} layers "
                f"(valid: 0..{num_layers - 1}); set {option}"
            )


@dataclass(frozen=True)
class TargetInfo:
    """What a strategy may know about the target before and after it is loaded.

    The shape fields come from the model's config (no torch needed); ``embed_weight``,
    ``lm_head_weight`` and ``tokenizer`` are filled by an engine's ``info()`` once loaded.
    """

    model_path: str
    model_type: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    num_attention_heads: int = 0
    num_key_value_heads: int = 0
    head_dim: int = 0
    intermediate_size: int = 0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    config: Mapping[str, Any] = field(default_factory=dict)
    mask_token_id: int | None = None
    tokenizer: Any = None
    embed_weight: Tensor = None  # [V, H], frozen
    lm_head_weight: Tensor = None  # [V, H], frozen


# --------------------------------------------------------------------------- store records


@dataclass(frozen=True)
class FeatureKey:
    """Identity of one sample's features; a new generation never serves stale bytes."""

    namespace: str
    sample_id: str
    generation: int = 0

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
        return {
            "key": {"namespace": self.key.namespace, "sample_id": self.key.sample_id,
                    "generation": self.key.generation},
            "specs": {n: {"shape": list(s.shape), "dtype": s.dtype} for n, s in self.specs.items()},
        }

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


# --------------------------------------------------------------------------- protocols


@runtime_checkable
class Strategy(Protocol):
    """A draft algorithm. Built with its options dataclass: ``factory(options)``."""

    name: str

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        """Pure and torch-free: `--plan` prints it. Raise ValueError for an impossible target."""

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
        """Write a serving directory (``config.json`` + ``model.safetensors``); return info for
        the ``specforge_check_export`` hooks (at least ``architecture`` and ``weights``:
        name -> shape)."""

    def load_export(self, export_dir: Path, info: TargetInfo) -> Any:
        """Rebuild the draft from an export directory (for ``specforge eval EXPORT``)."""


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
class FeatureStore(Protocol):
    """Where features live between capture and training.

    A store belongs to one namespace (given when it is built); keys from another are refused.
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
        """JSON that lets another process reopen this same store (``specforge.stores.reopen.open_store``).

        A store that can list what it holds also has ``records() -> list[FeatureRecord]``
        (the offline topology then reuses features captured earlier).
        """

    def close(self) -> None: ...


@runtime_checkable
class Topology(Protocol):
    """How capture and training are wired into processes."""

    def run(self, job: Any) -> Any:
        """Run the whole job (capture and training) and return the training result."""
