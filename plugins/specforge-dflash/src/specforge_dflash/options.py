"""The ``[strategy]`` keys of DFlash: a frozen dataclass checked when it is resolved (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.api import Range, StrategyOptions

FULL_ATTENTION = "full_attention"
SLIDING_ATTENTION = "sliding_attention"
LAYER_TYPES = (FULL_ATTENTION, SLIDING_ATTENTION)
DPACE_LOSSES = ("dpace", "dpace-cumulative-confidence-only", "dpace-continuation-value-only")


@dataclass(frozen=True)
class DFlashOptions(StrategyOptions):
    """DFlash options; every field is a ``--set strategy.<name>=...`` key."""

    target_layer_ids: Annotated[tuple[int, ...] | None, Range(ge=0)] = None
    """Target layers whose outputs are injected as context; None: the default rule (one draft layer
    reads the middle layer; n layers spread over 1..L-3)."""
    num_draft_layers: Annotated[int, Range(ge=1)] = 1
    """Decoder layers of the draft."""
    block_size: Annotated[int, Range(ge=2)] = 16
    """Tokens per block: the anchor plus block_size - 1 drafted slots."""
    num_anchors: Annotated[int, Range(ge=1)] = 512
    """Blocks trained per sample (fewer when the sample has fewer valid anchors)."""
    loss_decay_gamma: Annotated[float | None, Range(ge=0, note="0 or unset means no decay")] = 7.0
    """Slot weight exp(-(k-1)/γ) (the dflash loss only; D-PACE has no decay)."""
    loss: Literal["dflash", "dpace", "dpace-cumulative-confidence-only", "dpace-continuation-value-only"] = "dflash"
    """Block objective: dflash (token mean of decayed slot CE) or D-PACE (arXiv 2605.18810: slot CE weighted
    by the detached suffix sum of acceptance prefix products, per-sample mean) and its two ablations."""
    dpace_alpha: Annotated[float, Range(ge=0, le=1)] = 0.5
    """D-PACE smoothing: a supervised slot's survival factor is (1-α)·q + α, q the draft's probability of the label."""
    mask_token_id: Annotated[int | None, Range(ge=0)] = None
    """The token drafted slots start from; None: resolved from the target (its mask token, else the
    first unused embedding row, pad, eos, unk)."""
    layer_types: tuple[str, ...] | None = None
    """Attention type per draft layer (full_attention | sliding_attention); None: all full."""
    sliding_window: Annotated[int | None, Range(ge=1)] = None
    """Window of sliding_attention layers (required when any layer slides)."""
    attention: Literal["auto", "prefix", "blockwise", "flex"] = "auto"
    """Attention kernel: auto is flex on CUDA, prefix (grouped by anchor, flash-style) elsewhere."""
    loss_chunk_blocks: Annotated[int, Range(ge=1)] = 128
    """Blocks per vocabulary-projection chunk (bounds the logits' memory)."""

    def problems(self) -> list[str]:
        """Inconsistencies between fields, each naming the key to change."""
        out = []
        if self.target_layer_ids is not None:
            if not self.target_layer_ids:
                out.append("strategy.target_layer_ids is empty; give at least one layer id or leave it unset")
            if len(set(self.target_layer_ids)) != len(self.target_layer_ids):
                out.append(f"strategy.target_layer_ids {list(self.target_layer_ids)} repeats a layer")
        types = self.layer_types
        if types is not None:
            if len(types) != self.num_draft_layers:
                out.append(f"strategy.layer_types has {len(types)} entries but num_draft_layers is "
                           f"{self.num_draft_layers}; give one type per draft layer")
            bad = sorted(set(types) - set(LAYER_TYPES))
            if bad:
                out.append(f"strategy.layer_types: unknown {bad}; use {' or '.join(LAYER_TYPES)}")
            if SLIDING_ATTENTION in types and self.sliding_window is None:
                out.append("strategy.layer_types has a sliding_attention layer: set "
                           "strategy.sliding_window to a positive window")
        return out

    def resolved_layer_types(self) -> tuple[str, ...]:
        return self.layer_types or (FULL_ATTENTION,) * self.num_draft_layers
