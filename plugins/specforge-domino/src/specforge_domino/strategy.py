"""``DominoStrategy``: DFlash's strategy with Domino's labels, head, loss and export fields.

Torch-free at import, like DFlash's; everything shared (anchors, masks, blocks, collation,
decoding loop, export writer) is DFlash's own code, reached through its documented extension
points (``config_fields``, ``model_class``, ``block_targets``, ``model_inputs``, ``reduce``).
"""

from __future__ import annotations

from typing import Any

from specforge.api import LossOutput, StepContext, TargetInfo
from specforge_dflash.strategy import DFlashStrategy
from specforge_domino.draft_config import DominoConfig
from specforge_domino.options import DominoOptions


class DominoStrategy(DFlashStrategy):
    """DFlash backbone + GRU logit correction, trained with a decaying base-loss weight λ."""

    name = "domino"
    config_class = DominoConfig

    def __init__(self, options: DominoOptions | None = None) -> None:
        super().__init__(options if options is not None else DominoOptions())

    def config_fields(self, info: TargetInfo) -> dict[str, Any]:
        o = self.options
        fields = super().config_fields(info)
        fields.update({
            "gru_hidden_dim": o.gru_hidden_dim or max(1, info.hidden_size // 4),
            "emb_dim": o.emb_dim or max(1, info.hidden_size // 16),
            "shift_label": o.shift_label,
            "pure_draft_prefix_len": o.pure_draft_prefix_len,
        })
        return fields

    def model_class(self) -> type:
        from specforge_domino.model import DominoDraftModel
        return DominoDraftModel

    def block_targets(self, batch: dict, anchors: Any, keep: Any, cfg: DominoConfig) -> Any:
        """shift_label: slot k -> x_{p+k+1}, all slots, decay exp(-k/γ); else DFlash's layout."""
        from specforge_dflash.labels import block_targets
        shift = cfg.shift_label
        return block_targets(batch["input_ids"], batch["loss_mask"], anchors, keep, cfg.block_size,
                             gamma=self.options.loss_decay_gamma, label_shift=1 if shift else 0,
                             supervise_first_slot=shift, decay_offset=0 if shift else 1)

    def model_inputs(self, targets: Any) -> dict[str, Any]:
        return {"labels": targets.labels, "prev_ids": targets.prev_ids}

    def lambda_base(self, ctx: StepContext) -> float:
        from specforge_domino.schedule import lambda_base
        o = self.options
        return lambda_base(ctx.step, ctx.total_steps, o.lambda_base_start, o.decay_ratio)

    def reduce(self, out: dict, targets: Any, keep: Any, ctx: StepContext) -> LossOutput:
        from specforge_domino.loss import domino_loss_output
        return domino_loss_output(out, targets, keep, self.lambda_base(ctx))
