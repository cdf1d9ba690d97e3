"""Options of the ``eagle3`` strategy (config table ``[strategy]``, ``--set strategy.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from specforge.api import Range, StrategyOptions


@dataclass(frozen=True)
class Eagle3Options(StrategyOptions):
    """EAGLE3 knobs; the defaults are the published recipe's."""

    aux_layer_ids: Annotated[tuple[int, ...] | None, Range(ge=0)] = None
    """Three 0-based target layers whose outputs feed the draft; default ``[1, L//2-1, L-4]``."""
    ttt_length: Annotated[int, Range(ge=1)] = 7
    """Training-time-test steps: how many chained draft steps each position is trained on."""
    draft_vocab_size: Annotated[int, Range(ge=1)] = 32000
    """Size of the draft's output vocabulary (most frequent supervised tokens); clamped to the target's."""
    decay: Annotated[float, Range(gt=0, le=1)] = 0.8
    """Weight of TTT step k is ``decay**k``; the step losses are summed, not averaged."""
    intermediate_size: Annotated[int | None, Range(ge=1)] = None
    """Width of the draft MLP; default the target's."""
    initializer_range: Annotated[float | None, Range(gt=0)] = None
    """Std of the normal init of trainable linear layers; default the target config's, else 0.02."""
    fc_norm: bool = False
    """EAGLE3.1: an RMSNorm on each of the three target-layer chunks before ``fc`` (``fc_norm.{0,1,2}``)."""
    norm_output: bool = True
    """Logits from ``lm_head(norm(hidden))`` (true, EAGLE3 and EAGLE3.1) or ``lm_head(hidden)``; the hidden
    fed to the next step is the pre-norm one either way (see the README on serving semantics)."""
    loss: Literal["kl", "lk_lambda", "lk_alpha"] = "kl"
    """Step objective: ``kl`` soft cross-entropy; ``lk_alpha`` −log(mean acceptance); ``lk_lambda``
    w·kl + (1−w)·(1 − mean acceptance) with w = kl_scale·exp(−kl_decay·acceptance) (arXiv 2602.23881)."""
    kl_scale: Annotated[float, Range(ge=0)] = 1.0
    """``lk_lambda``: the KL weight at zero acceptance; above 1 the acceptance term's weight turns negative
    while acceptance is low."""
    kl_decay: Annotated[float, Range(ge=0)] = 1.0
    """``lk_lambda``: how fast the KL weight falls as acceptance grows (0: a fixed weight kl_scale)."""
    draft_kv_cache: bool = True
    """Keep the draft's step-0 keys across decoding rounds (its KV cache), so each round runs the
    draft over the newly accepted tokens only; false re-runs it over the whole prefix every round."""

    def problems(self) -> list[str]:
        if self.aux_layer_ids is not None and len(self.aux_layer_ids) != 3:
            return [f"strategy.aux_layer_ids needs exactly 3 layer ids (low, mid, high), got "
                    f"{list(self.aux_layer_ids)}; e.g. --set strategy.aux_layer_ids=[1,17,32]"]
        return []
