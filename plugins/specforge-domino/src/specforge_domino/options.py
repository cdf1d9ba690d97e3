"""The ``[strategy]`` keys of Domino: every DFlash key plus the correction head and λ schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from specforge.api import Range
from specforge_dflash.options import DFlashOptions


@dataclass(frozen=True)
class DominoOptions(DFlashOptions):
    """DFlash options plus the GRU correction head and the base-loss curriculum."""

    gru_hidden_dim: Annotated[int | None, Range(ge=1)] = None
    """GRU width; None: hidden_size // 4 (1024 for Qwen3-8B, as shipped)."""
    emb_dim: Annotated[int | None, Range(ge=1)] = None
    """Correction bottleneck; None: hidden_size // 16 (256 for Qwen3-8B, as shipped)."""
    shift_label: bool = True
    """Slot k predicts x_{p+k+1} (all slots supervised)."""
    pure_draft_prefix_len: Annotated[int, Range(ge=0)] = 1
    """Leading slots that keep the uncorrected base logits."""
    lambda_base_start: Annotated[float, Range(ge=0, le=1)] = 1.0
    """λ at step 0 in (1-λ)·CE(final) + λ·CE(base)."""
    decay_ratio: Annotated[float, Range(ge=0)] = 1.0
    """λ reaches 0 after decay_ratio × total optimizer steps."""
