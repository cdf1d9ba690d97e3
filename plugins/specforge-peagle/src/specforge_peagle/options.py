"""Options of the ``peagle`` strategy (config table ``[strategy]``, ``--set strategy.KEY=VALUE``). No torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from specforge.api import Range, StrategyOptions


@dataclass(frozen=True)
class PeagleOptions(StrategyOptions):
    """P-EAGLE knobs; the defaults are the reference trainer's schema defaults (the Qwen3-8B recipe
    sets ``num_depths = 5``)."""

    aux_layer_ids: Annotated[tuple[int, ...] | None, Range(ge=0)] = None
    """Three 0-based target layers whose outputs feed the draft (as EAGLE3); default ``[1, L//2-1, L-4]``."""
    num_draft_layers: Annotated[int, Range(ge=1)] = 4
    """Decoder layers of the draft: one EAGLE3-style first layer, then standard Llama layers."""
    num_depths: Annotated[int, Range(ge=1)] = 8
    """Parallel prediction depths D: the draft learns to propose up to D tokens in one forward."""
    down_sample_ratio: Annotated[float, Range(gt=0, le=1)] = 0.8
    """COD sampling keeps about ``n·max(r^d, r_min)`` positions at depth d (r is this ratio)."""
    down_sample_ratio_min: Annotated[float, Range(ge=0, le=1)] = 0.2
    """COD sampling's floor ``r_min`` on the kept fraction at deep depths."""
    draft_vocab_size: Annotated[int, Range(ge=1)] = 32000
    """Size of the draft's output vocabulary (most frequent supervised tokens); clamped to the target's."""
    mask_token_id: Annotated[int | None, Range(ge=0)] = None
    """The token the drafted positions embed; None: resolved from the target (its mask token, else the
    first unused embedding row, pad, eos, unk)."""
    norm_before_residual: bool = False
    """First layer: the residual is the normalised incoming hidden instead of the raw one."""
    intermediate_size: Annotated[int | None, Range(ge=1)] = None
    """Width of the draft MLPs; default the target's."""
    initializer_range: Annotated[float | None, Range(gt=0)] = None
    """Std of the normal init of trainable linear layers; default the target config's, else 0.02."""

    def problems(self) -> list[str]:
        if self.aux_layer_ids is not None and len(self.aux_layer_ids) != 3:
            return [f"strategy.aux_layer_ids needs exactly 3 layer ids (low, mid, high), got "
                    f"{list(self.aux_layer_ids)}; e.g. --set strategy.aux_layer_ids=[1,17,32]"]
        return []
