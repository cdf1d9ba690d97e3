"""The ``[strategy]`` keys of DSpark: every DFlash key plus the heads and the loss weights (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.api import Range
from specforge_dflash.options import DFlashOptions

MARKOV_HEAD_TYPES = ("vanilla", "gated", "rnn")


@dataclass(frozen=True)
class DSparkOptions(DFlashOptions):
    """DFlash options (block, anchors, layers, mask token, attention) plus DSpark's heads and loss."""

    block_size: Annotated[int, Range(ge=2)] = 7
    """Tokens per block: the anchor plus block_size - 1 mask slots; every slot drafts the token after
    it, so a block proposes block_size tokens (7 in the shipped Qwen3 configs)."""
    loss_decay_gamma: Annotated[float | None, Range(ge=0, note="0 or unset means no decay")] = None
    """Slot weight exp(-k/γ) (slot 0 has weight 1); unset as in the shipped recipes."""
    markov_rank: Annotated[int, Range(ge=0, note="0 trains without a Markov head (not servable)")] = 256
    """Rank r of the previous-token logit bias W2·W1[x_prev] (V×r and r×V)."""
    markov_head_type: Literal["vanilla", "gated", "rnn"] = "vanilla"
    """vanilla: W2(W1[x_prev]); gated: a sigmoid gate from [hidden ; W1[x_prev]]; rnn: a gated
    recurrent state unrolled over the block."""
    enable_confidence_head: bool | None = None
    """Train the acceptance-confidence head (Linear -> 1 logit); None: on when confidence_loss_alpha > 0."""
    confidence_head_with_markov: bool = True
    """The confidence head also reads W1[x_prev] (as shipped); needs markov_rank > 0."""
    attention_mode: Literal["gqa", "mha"] = "gqa"
    """gqa needs fewer key/value heads than query heads in the target; mha needs equal counts."""
    ce_loss_alpha: Annotated[float, Range(ge=0)] = 0.1
    """Weight of the cross-entropy against the next ground-truth token."""
    l1_loss_alpha: Annotated[float, Range(ge=0)] = 0.9
    """Weight of ‖p_draft − p_target‖₁ against the target's own distribution for that token."""
    confidence_loss_alpha: Annotated[float, Range(ge=0)] = 1.0
    """Weight of the confidence head's BCE against the acceptance probability 1 − ½‖p_draft − p_target‖₁."""

    def problems(self) -> list[str]:
        out = super().problems()
        if self.confidence_head_with_markov and self.markov_rank == 0 and self.confidence_head:
            out.append("strategy.confidence_head_with_markov needs strategy.markov_rank > 0; set it to false "
                       "or give a rank")
        if self.enable_confidence_head and self.confidence_loss_alpha == 0:
            out.append("strategy.enable_confidence_head is true but strategy.confidence_loss_alpha is 0, so the "
                       "head would never be trained; give the loss a weight or turn the head off")
        if self.ce_loss_alpha == 0 and self.l1_loss_alpha == 0:
            out.append("strategy.ce_loss_alpha and strategy.l1_loss_alpha are both 0: nothing trains the "
                       "draft's distribution")
        return out

    @property
    def confidence_head(self) -> bool:
        """Whether the draft has a confidence head (the option, else on when its loss has a weight)."""
        if self.enable_confidence_head is None:
            return self.confidence_loss_alpha > 0
        return self.enable_confidence_head

    @property
    def needs_teacher(self) -> bool:
        """The loss compares with the target's distribution (L1 or confidence): capture its last hidden."""
        return self.l1_loss_alpha > 0 or (self.confidence_head and self.confidence_loss_alpha > 0)
