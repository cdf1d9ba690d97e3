"""``DSparkStrategy``: DFlash's strategy with DSpark's labels, heads, loss and export fields.

Torch-free at import, like DFlash's. Everything shared (anchors, noise blocks, masks, KV
injection, collation, the decoding loop, the export writer and reader) is specforge-dflash's own
code, reached through its documented extension points (``config_class`` / ``config_fields``,
``model_class``, ``block_targets``, ``model_inputs``, ``reduce``) and the Strategy contract's
``feature_request`` / ``collate`` / ``export``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.api import FeatureRequest, LossOutput, StepContext, TargetInfo, UserError
from specforge_dflash.strategy import DFlashStrategy
from specforge_dspark.draft_config import DSparkConfig
from specforge_dspark.options import DSparkOptions


class DSparkStrategy(DFlashStrategy):
    """DFlash backbone, next-token block labels, Markov logit bias, confidence head; L1 to the target."""

    name = "dspark"
    config_class = DSparkConfig

    def __init__(self, options: DSparkOptions | None = None) -> None:
        super().__init__(options if options is not None else DSparkOptions())

    # ------------------------------------------------------------------ target and draft

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        """DFlash's layers, plus the target's last hidden state when the loss compares distributions."""
        return FeatureRequest(layers=self.target_layer_ids(info), last_hidden=self.options.needs_teacher)

    def plan_notes(self, info: TargetInfo) -> list[str]:
        notes = super().plan_notes(info)
        problem = self._head_problem(info)
        if problem:
            raise UserError(problem)
        o = self.options
        head = f"markov {o.markov_head_type} rank {o.markov_rank}" if o.markov_rank else "no markov head"
        conf = "confidence head" + (" with markov input" if o.confidence_head_with_markov else "") \
            if o.confidence_head else "no confidence head"
        return [*notes, f"{head}, {conf}; loss {o.ce_loss_alpha}·CE + {o.l1_loss_alpha}·L1 + "
                        f"{o.confidence_loss_alpha}·confidence"]

    def _head_problem(self, info: TargetInfo) -> str | None:
        """The attention-mode rule of the reference DSparkDraftModel, for this target's head counts."""
        heads, kv = info.num_attention_heads, info.num_key_value_heads
        if heads is None or kv is None:
            return None
        mode = self.options.attention_mode
        if mode == "gqa" and not kv < heads:
            return (f"DSpark's attention_mode gqa needs fewer key/value heads than query heads; this target has "
                    f"{kv} and {heads}: set strategy.attention_mode=mha")
        if mode == "mha" and kv != heads:
            return (f"DSpark's attention_mode mha needs as many key/value heads as query heads; this target has "
                    f"{kv} and {heads}: use strategy.attention_mode=gqa")
        return None

    def config_fields(self, info: TargetInfo) -> dict[str, Any]:
        problem = self._head_problem(info)
        if problem:
            raise UserError(problem)
        o = self.options
        fields = super().config_fields(info)
        fields.update({
            "markov_rank": o.markov_rank,
            "markov_head_type": o.markov_head_type,
            "enable_confidence_head": o.confidence_head,
            "confidence_head_with_markov": o.confidence_head_with_markov and o.confidence_head,
            "attention_mode": o.attention_mode,
        })
        return fields

    def model_class(self) -> type:
        from specforge_dspark.model import DSparkDraftModel
        return DSparkDraftModel

    # ------------------------------------------------------------------ training

    def collate(self, samples) -> dict:
        from specforge_dspark.collate import collate_with_last_hidden
        return collate_with_last_hidden(samples, self.options.needs_teacher)

    def block_targets(self, batch: dict, anchors: Any, keep: Any, cfg: DSparkConfig) -> Any:
        """Next-token labels over the block's contiguous valid prefix, decay exp(-k/γ), the teacher's hidden."""
        import torch

        from specforge_dspark.labels import dspark_targets
        dtype = torch.promote_types(torch.float32, batch["hidden_states"].dtype)  # float32, or float64 runs
        return dspark_targets(batch["input_ids"], batch["loss_mask"], anchors, keep, cfg.block_size,
                              gamma=self.options.loss_decay_gamma, last_hidden=batch.get("last_hidden"), dtype=dtype)

    def model_inputs(self, targets: Any) -> dict[str, Any]:
        return {"labels": targets.labels, "prev_ids": targets.prev_ids, "teacher_hidden": targets.teacher_hidden}

    def reduce(self, out: dict, targets: Any, keep: Any, ctx: StepContext) -> LossOutput:
        from specforge_dspark.loss import LossWeights, dspark_loss_output
        o = self.options
        alpha = LossWeights(ce=o.ce_loss_alpha, l1=o.l1_loss_alpha, confidence=o.confidence_loss_alpha)
        return dspark_loss_output(out, targets, keep, alpha)

    # ------------------------------------------------------------------ export

    def export(self, draft: Any, out_dir: Path, fmt: str) -> dict:
        """``sglang``: the Qwen3DSparkModel directory SGLang's DSPARK worker loads (no embedding, no lm_head)."""
        from specforge.api import unwrap
        if unwrap(draft).config.markov_rank <= 0:
            raise UserError("SGLang's DSpark draft needs a Markov head; this draft was trained with "
                            "strategy.markov_rank=0 and cannot be served as DSpark")
        return super().export(draft, out_dir, fmt)
