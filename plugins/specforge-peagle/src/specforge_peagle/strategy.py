"""The ``peagle`` strategy: what it asks of the target, how it builds, trains, drafts and exports.

P-EAGLE consumes exactly EAGLE3's features and teacher (three target layers plus the final
hidden state, the shifted frozen-head distribution over the draft vocabulary), so it uses
specforge-eagle3's collation, teacher and vocabulary mapping; the draft, COD sampling, mask,
loss, parallel drafting and the vLLM speculators export are its own.

Imports no torch at module level: ``specforge run --plan`` builds the strategy to print its
feature request. Every method that needs torch imports it (and the model modules) itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specforge.api import (
    DataStats,
    FeatureRequest,
    LossOutput,
    SampleFeatures,
    StepContext,
    TargetInfo,
    UserError,
    resolve_mask_token,
    unwrap,
)
from specforge_eagle3.strategy import default_aux_layer_ids
from specforge_peagle.options import PeagleOptions

if TYPE_CHECKING:
    import torch

    from specforge_peagle.config import PeagleConfig
    from specforge_peagle.model import PeagleDraft

log = logging.getLogger(__name__)


class PeagleStrategy:
    """P-EAGLE (Hui et al., 2026): an EAGLE3-style draft that drafts k tokens in one forward, the
    positions after the first fed a mask token and a learned ``mask_hidden``; trained on COD-sampled
    (anchor, depth) pairs under a depth/anchor attention mask."""

    name = "peagle"

    def __init__(self, options: PeagleOptions | None = None) -> None:
        self.options = options or PeagleOptions()

    # ------------------------------------------------------------------ planning

    def aux_layer_ids(self, info: TargetInfo) -> tuple[int, ...]:
        layers = info.num_layers
        if self.options.aux_layer_ids is None:
            return default_aux_layer_ids(layers)
        ids = tuple(self.options.aux_layer_ids)
        bad = [i for i in ids if not 0 <= i < layers]
        if bad:
            example = ",".join(map(str, default_aux_layer_ids(layers)))
            raise UserError(f"strategy.aux_layer_ids {list(ids)}: {bad} out of range for a target with {layers} "
                            f"layers (valid 0..{layers - 1}); fix it with --set strategy.aux_layer_ids=[{example}]")
        return ids

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        return FeatureRequest(layers=self.aux_layer_ids(info), last_hidden=True)

    def plan_notes(self, info: TargetInfo) -> list[str]:
        """The mask token this target gives (``run --plan`` shows it, and refuses a target without one)."""
        token = resolve_mask_token(info, self.options.mask_token_id)
        return [f"mask token {token.id} ({token.source})"]

    # ------------------------------------------------------------------ building

    def draft_config(self, info: TargetInfo) -> PeagleConfig:
        from specforge.api.nn import rope_parameters
        from specforge_eagle3.vocab import effective_draft_vocab_size
        from specforge_peagle.config import PeagleConfig

        why = "P-EAGLE copies it for its draft"
        o = self.options
        return PeagleConfig(
            hidden_size=info.hidden_size,
            intermediate_size=o.intermediate_size or info.require("intermediate_size", why),
            num_attention_heads=info.require("num_attention_heads", why),
            num_key_value_heads=info.require("num_key_value_heads", why),
            head_dim=info.require("head_dim", why),
            num_layers=o.num_draft_layers,
            vocab_size=info.vocab_size,
            draft_vocab_size=effective_draft_vocab_size(o.draft_vocab_size, info.vocab_size),
            aux_layer_ids=self.aux_layer_ids(info),
            mask_token_id=resolve_mask_token(info, o.mask_token_id).id,
            num_depths=o.num_depths,
            rope=rope_parameters(info.config),
            rms_norm_eps=info.require("rms_norm_eps", why),
            max_position_embeddings=info.max_position_embeddings or 4096,
            hidden_act=info.hidden_act or "silu",
            initializer_range=o.initializer_range or info.config.get("initializer_range") or 0.02,
            norm_before_residual=o.norm_before_residual,
            target_model=info.model_path,
            target_config=dict(info.config),
        )

    def build_draft(self, info: TargetInfo, stats: DataStats) -> PeagleDraft:
        from specforge_eagle3.vocab import build_vocab_mapping
        from specforge_peagle.model import PeagleDraft

        embed = info.require("embed_weight", "P-EAGLE starts its trainable embedding from the target's")
        head = info.require("lm_head_weight", "P-EAGLE computes its teacher with the target's lm_head")
        cfg = self.draft_config(info)
        draft = PeagleDraft(cfg, embed, head)
        mapping = build_vocab_mapping(stats.loss_token_counts, cfg.draft_vocab_size, cfg.vocab_size)
        draft.set_vocab(mapping.d2t(), mapping.t2d())
        draft.vocab_provenance = {"corpus_hash": stats.corpus_hash, "num_loss_tokens": stats.num_loss_tokens,
                                  "distinct_loss_tokens": len(stats.loss_token_counts)}
        if stats.num_samples and len(stats.loss_token_counts) < cfg.draft_vocab_size:
            log.warning("only %d distinct supervised tokens for a draft vocabulary of %d: the rest is "
                        "filled with the lowest unseen ids", len(stats.loss_token_counts), cfg.draft_vocab_size)
        return draft

    # ------------------------------------------------------------------ training

    def collate(self, samples: Sequence[SampleFeatures]) -> dict[str, torch.Tensor]:
        """EAGLE3's padded batch plus ``sample_hash`` [B] (the sample's part of the COD seed)."""
        import torch

        from specforge_eagle3.options import Eagle3Options
        from specforge_eagle3.strategy import Eagle3Strategy
        from specforge_peagle.cod import content_hash

        batch = Eagle3Strategy(Eagle3Options()).collate(samples)
        batch["sample_hash"] = torch.tensor([content_hash(torch.as_tensor(s["input_ids"]).tolist()) for s in samples],
                                            dtype=torch.long)
        return batch

    def loss(self, draft: Any, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        from specforge_eagle3.loss import tau_estimate
        from specforge_peagle.elements import training_elements
        from specforge_peagle.loss import masked_mean

        o = self.options
        anchors, depths, documents = training_elements(batch, o.num_depths, o.down_sample_ratio,
                                                       o.down_sample_ratio_min, ctx.step, ctx.micro_step)
        out = draft(batch, anchors, depths, documents)
        hits, counts = out["hits"], out["counts"]
        ratios: dict[str, tuple[Any, Any]] = {f"acc_{d}": (hits[d], counts[d]) for d in range(hits.shape[0])}
        ratios["acc"] = (hits.sum(), counts.sum())
        accuracies = (hits / counts.clamp_min(1)).tolist()  # one sync
        metrics = {"tau_estimate": tau_estimate(accuracies), "elements": float(anchors.shape[0] * anchors.shape[1])}
        return LossOutput(loss=masked_mean(out["ce_sum"], out["weight"]), metrics=metrics, ratio_metrics=ratios)

    # ------------------------------------------------------------------ checkpoints

    def extra_state(self, draft: Any) -> dict:
        """The draft vocabulary (JSON-safe) and where it came from, and the mask token drafted with."""
        model = unwrap(draft)
        return {"vocab_mapping": {"d2t": model.d2t.cpu().tolist(), "vocab_size": int(model.t2d.numel()),
                                  **model.vocab_provenance},
                "mask_token_id": model.config.mask_token_id}

    def load_extra_state(self, draft: Any, state: dict) -> None:
        """Reuse the saved draft vocabulary; refuse a checkpoint trained with another mask token."""
        from specforge_eagle3.vocab import VocabMapping

        model = unwrap(draft)
        saved_mask = state.get("mask_token_id")
        if saved_mask is not None and saved_mask != model.config.mask_token_id:
            raise UserError(f"the checkpoint was trained with mask token {saved_mask}, these options resolve "
                            f"{model.config.mask_token_id}; resume with --set strategy.mask_token_id={saved_mask}")
        saved = state.get("vocab_mapping")
        if saved is None:
            return
        mapping = VocabMapping.from_d2t(saved["d2t"], int(saved["vocab_size"]))
        model.set_vocab(mapping.d2t().to(model.d2t.device), mapping.t2d().to(model.t2d.device))
        model.vocab_provenance = {k: v for k, v in saved.items() if k not in ("d2t", "vocab_size")}

    # ------------------------------------------------------------------ decoding

    def begin_decode(self, draft: Any, prompt_ids: Sequence[int], features: SampleFeatures) -> Any:
        from specforge_peagle.decode import DecodeState

        return DecodeState(prompt_len=len(prompt_ids))

    def propose(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: SampleFeatures,
                k: int) -> list[int]:
        """Up to ``min(k, num_depths)`` tokens, all from one draft forward."""
        from specforge_peagle.decode import draft_parallel

        return draft_parallel(unwrap(draft), accepted_ids, features, k)[0]

    # ------------------------------------------------------------------ export

    def export(self, draft: Any, out_dir: Path, fmt: str) -> dict:
        """``speculators``: the checkpoint vLLM serves P-EAGLE from (``speculators_model_type: peagle``)."""
        from specforge_peagle import export

        return export.export_draft(draft, Path(out_dir), fmt)

    def load_export(self, export_dir: Path, info: TargetInfo) -> PeagleDraft:
        from specforge_peagle import export

        return export.load_export(Path(export_dir), info)
