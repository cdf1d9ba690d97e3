"""What SGLang's model captures, agreed between this process and SGLang's scheduler (torch-free).

The capture class (``specforge_sglang.capture_model``) runs inside SGLang's scheduler process;
it learns the plan from an environment variable set before SGLang starts. Per token it
produces one row: the captured layers in ``plan.layers`` order, then the final post-norm hidden
state (the lm_head input), each block ``hidden_size`` wide. Layer id i = output of decoder
layer i = Hugging Face ``hidden_states[i+1]`` (the last layer's is the residual stream before
the final norm).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PLAN_ENV = "SPECFORGE_SGLANG_CAPTURE_PLAN"
"""JSON of a ``CapturePlan``; read by the capture class when SGLang builds the model."""

EXTERNAL_PACKAGE_ENV = "SGLANG_EXTERNAL_MODEL_PACKAGE"
"""SGLang's own variable naming a package whose model classes replace its built-in ones."""

CAPTURE_PACKAGE = "specforge_sglang.capture_model"

RID_PREFIX = "specforge-capture-"
"""Request ids starting with this are capture requests: the class writes their rows to ``shm_dir``."""

ROWS_SUFFIX = ".rows"
ERROR_SUFFIX = ".error"


@dataclass(frozen=True)
class CapturePlan:
    """The layers SGLang's model captures (sorted, distinct) and where binary rows go."""

    layers: tuple[int, ...] = ()
    shm_dir: str = ""  # empty: no binary rows; features only through SGLang's JSON hidden states

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(sorted(set(int(i) for i in self.layers))))

    @property
    def num_blocks(self) -> int:
        """Blocks per row: the captured layers, then the final post-norm hidden state."""
        return len(self.layers) + 1

    def covers(self, layers: tuple[int, ...]) -> bool:
        return set(layers) <= set(self.layers)

    def widened(self, layers: tuple[int, ...]) -> CapturePlan:
        return CapturePlan(layers=(*self.layers, *layers), shm_dir=self.shm_dir)

    def block_of(self, layer: int) -> int:
        """Index of a captured layer's block in a row."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise KeyError(f"layer {layer} is not captured (captured: {list(self.layers)})") from None

    def to_env(self) -> str:
        return json.dumps({"layers": list(self.layers), "shm_dir": self.shm_dir})

    @classmethod
    def from_env(cls, text: str | None) -> CapturePlan | None:
        """The plan in ``text`` (the env var's value), or None when there is none."""
        if not text:
            return None
        try:
            obj = json.loads(text)
            return cls(layers=tuple(obj.get("layers", ())), shm_dir=str(obj.get("shm_dir", "")))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{PLAN_ENV} is not a capture plan: {text!r} ({exc})") from exc


def rows_path(shm_dir: str | Path, rid: str) -> Path:
    """Where the capture class writes the rows of request ``rid`` (raw bytes, row-major [S, W])."""
    return Path(shm_dir) / f"{rid}{ROWS_SUFFIX}"


def error_path(shm_dir: str | Path, rid: str) -> Path:
    """Where the capture class explains why it could not write the rows of ``rid``."""
    return Path(shm_dir) / f"{rid}{ERROR_SUFFIX}"
