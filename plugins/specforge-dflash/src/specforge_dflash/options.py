"""The ``[strategy]`` keys of DFlash: a frozen dataclass checked when it is built (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"
LAYER_TYPES = (FULL_ATTENTION, SLIDING_ATTENTION)


@dataclass(frozen=True)
class DFlashOptions:
    """DFlash options; every field is a ``--set strategy.<name>=...`` key."""

    target_layer_ids: tuple[int, ...] | None = None  # None: the default rule (see layer_ids.py)
    num_draft_layers: int = 1
    block_size: int = 16
    num_anchors: int = 512  # blocks per sample (fewer when the sample has fewer valid anchors)
    loss_decay_gamma: float | None = 7.0  # slot weight exp(-(k-1)/γ); None or 0: no decay
    mask_token_id: int | None = None  # None: the target's reserved mask token
    layer_types: tuple[str, ...] | None = None  # per draft layer; None: all full attention
    sliding_window: int | None = None  # required when any layer is sliding
    attention: Literal["auto", "prefix", "blockwise", "flex"] = "auto"  # auto: flex on CUDA, else prefix
    loss_chunk_blocks: int = 128  # blocks per vocab projection chunk (bounds logits memory)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every inconsistency in these options, each naming the key to change."""
        out = []
        if self.num_draft_layers < 1:
            out.append(f"strategy.num_draft_layers must be >= 1, got {self.num_draft_layers}")
        if self.block_size < 2:
            out.append(f"strategy.block_size must be >= 2 (one anchor plus drafted slots), "
                       f"got {self.block_size}")
        if self.num_anchors < 1:
            out.append(f"strategy.num_anchors must be >= 1, got {self.num_anchors}")
        if self.loss_decay_gamma is not None and self.loss_decay_gamma < 0:
            out.append(f"strategy.loss_decay_gamma must be positive (or 0 / unset for no decay), "
                       f"got {self.loss_decay_gamma}")
        if self.target_layer_ids is not None:
            if not self.target_layer_ids:
                out.append("strategy.target_layer_ids is empty; give at least one layer id or leave it unset")
            if len(set(self.target_layer_ids)) != len(self.target_layer_ids):
                out.append(f"strategy.target_layer_ids {list(self.target_layer_ids)} repeats a layer")
        if self.loss_chunk_blocks < 1:
            out.append(f"strategy.loss_chunk_blocks must be >= 1, got {self.loss_chunk_blocks}")
        types = self.layer_types
        if types is not None:
            if len(types) != self.num_draft_layers:
                out.append(f"strategy.layer_types has {len(types)} entries but num_draft_layers is "
                           f"{self.num_draft_layers}; give one type per draft layer")
            bad = sorted(set(types) - set(LAYER_TYPES))
            if bad:
                out.append(f"strategy.layer_types: unknown {bad}; use {' or '.join(LAYER_TYPES)}")
            if SLIDING_ATTENTION in types and (self.sliding_window is None or self.sliding_window < 1):
                out.append("strategy.layer_types has a sliding_attention layer: set "
                           "strategy.sliding_window to a positive window")
        if self.sliding_window is not None and self.sliding_window < 1:
            out.append(f"strategy.sliding_window must be positive, got {self.sliding_window}")
        return out

    def resolved_layer_types(self) -> tuple[str, ...]:
        return self.layer_types or (FULL_ATTENTION,) * self.num_draft_layers
