"""The ``eagle3`` strategy: what it asks of the target, how it builds, trains, drafts and exports.

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
    DraftTree,
    FeatureRequest,
    LossOutput,
    SampleFeatures,
    StepContext,
    TargetInfo,
    TreeShape,
    UserError,
    unwrap,
)
from specforge_eagle3.options import Eagle3Options

if TYPE_CHECKING:
    import torch

    from specforge_eagle3.model import Eagle3Config, Eagle3Draft

log = logging.getLogger(__name__)

FEATURE_DIMS = {"input_ids": 1, "loss_mask": 1, "hidden_states": 2, "last_hidden": 2}


def default_aux_layer_ids(num_layers: int) -> tuple[int, int, int]:
    """``[1, L//2 - 1, L - 4]``, clamped into ``0..L-1`` so tiny targets work (ids may repeat)."""
    return tuple(min(max(i, 0), num_layers - 1) for i in (1, num_layers // 2 - 1, num_layers - 4))


class Eagle3Strategy:
    """EAGLE3 (Li et al., 2025): one decoder layer over [token embedding ; fc(low, mid, high target
    layers)], trained with a training-time-test unroll against the target's next-token distribution."""

    name = "eagle3"

    def __init__(self, options: Eagle3Options | None = None) -> None:
        self.options = options or Eagle3Options()

    # ------------------------------------------------------------------ planning

    def aux_layer_ids(self, info: TargetInfo) -> tuple[int, ...]:
        layers = info.num_layers
        if self.options.aux_layer_ids is None:
            return default_aux_layer_ids(layers)
        ids = tuple(self.options.aux_layer_ids)
        bad = [i for i in ids if not 0 <= i < layers]
        if bad:
            example = list(default_aux_layer_ids(layers))
            raise UserError(f"strategy.aux_layer_ids {list(ids)}: {bad} out of range for a target with "
                             f"{layers} layers (valid 0..{layers - 1}); fix it with "
                             f"--set strategy.aux_layer_ids=[{','.join(map(str, example))}]")
        return ids

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        return FeatureRequest(layers=self.aux_layer_ids(info), last_hidden=True)

    # ------------------------------------------------------------------ building

    def draft_config(self, info: TargetInfo) -> Eagle3Config:
        from specforge.api.nn import rope_parameters
        from specforge_eagle3.model import Eagle3Config
        from specforge_eagle3.vocab import effective_draft_vocab_size

        why = "EAGLE3 copies it for its draft"
        heads = info.require("num_attention_heads", why)
        return Eagle3Config(
            hidden_size=info.hidden_size,
            intermediate_size=self.options.intermediate_size or info.require("intermediate_size", why),
            num_attention_heads=heads,
            num_key_value_heads=info.require("num_key_value_heads", why),
            head_dim=info.require("head_dim", why),
            vocab_size=info.vocab_size,
            draft_vocab_size=effective_draft_vocab_size(self.options.draft_vocab_size, info.vocab_size),
            target_hidden_size=info.hidden_size,
            aux_layer_ids=self.aux_layer_ids(info),
            rope=rope_parameters(info.config),
            rms_norm_eps=info.require("rms_norm_eps", why),
            max_position_embeddings=info.max_position_embeddings or 4096,
            hidden_act=info.hidden_act or "silu",
            initializer_range=(self.options.initializer_range or info.config.get("initializer_range") or 0.02),
            ttt_length=self.options.ttt_length,
            fc_norm=self.options.fc_norm,
            norm_output=self.options.norm_output,
            target_config=dict(info.config),
        )

    def build_draft(self, info: TargetInfo, stats: DataStats) -> Eagle3Draft:
        from specforge_eagle3.model import Eagle3Draft
        from specforge_eagle3.vocab import build_vocab_mapping

        embed = info.require("embed_weight", "EAGLE3 reuses the target's frozen embedding")
        head = info.require("lm_head_weight", "EAGLE3 computes its teacher with the target's lm_head")
        cfg = self.draft_config(info)
        draft = Eagle3Draft(cfg, embed, head)
        mapping = build_vocab_mapping(stats.loss_token_counts, cfg.draft_vocab_size, cfg.vocab_size)
        draft.set_vocab(mapping.d2t(), mapping.t2d())
        draft.vocab_provenance = {"corpus_hash": stats.corpus_hash, "num_loss_tokens": stats.num_loss_tokens,
                                  "distinct_loss_tokens": len(stats.loss_token_counts)}
        if stats.num_samples and len(stats.loss_token_counts) < cfg.draft_vocab_size:  # 0: rebuilt from a checkpoint
            log.warning("only %d distinct supervised tokens for a draft vocabulary of %d: the rest is "
                        "filled with the lowest unseen ids", len(stats.loss_token_counts), cfg.draft_vocab_size)
        return draft

    # ------------------------------------------------------------------ training

    def collate(self, samples: Sequence[SampleFeatures]) -> dict[str, torch.Tensor]:
        """Right-pad every feature with zeros to the longest sample; attention_mask marks real tokens."""
        import torch

        if not samples:
            raise ValueError("collate needs at least one sample")
        for i, sample in enumerate(samples):
            missing = [n for n in FEATURE_DIMS if n not in sample]
            if missing:
                raise UserError(f"sample {i} lacks features {missing}; EAGLE3 needs {list(FEATURE_DIMS)} (were the "
                                f"features captured for another strategy?)")
        lengths = [int(torch.as_tensor(s["input_ids"]).shape[0]) for s in samples]
        longest = max(lengths)
        batch: dict[str, torch.Tensor] = {}
        for name, dims in FEATURE_DIMS.items():
            rows = []
            for sample, length in zip(samples, lengths):
                value = torch.as_tensor(sample[name])
                if value.dim() != dims or value.shape[0] != length:
                    raise ValueError(f"feature {name!r} has shape {list(value.shape)}; expected {dims} dims "
                                     f"with {length} positions")
                pad = [0, 0] * (dims - 1) + [0, longest - length]
                rows.append(torch.nn.functional.pad(value, pad))
            batch[name] = torch.stack(rows)
        batch["input_ids"] = batch["input_ids"].long()
        batch["attention_mask"] = (torch.arange(longest)[None] < torch.tensor(lengths)[:, None]).long()
        return batch

    def loss(self, draft: Any, batch: dict[str, torch.Tensor], ctx: StepContext) -> LossOutput:
        from specforge_eagle3.loss import lk_step_losses, tau_estimate, weighted_total

        o = self.options
        lk = o.loss != "kl"
        out = draft(batch, acceptance=True) if lk else draft(batch)
        plosses, correct, counted = out["ploss"], out["correct"], out["counted"]
        metrics: dict[str, Any] = {}
        ratios: dict[str, tuple[Any, Any]] = {}
        for k in range(plosses.shape[0]):
            metrics[f"ploss_{k}"] = plosses[k].detach()
            ratios[f"acc_{k}"] = (correct[k], counted[k])
        metrics["tau_estimate"] = tau_estimate((correct / counted.clamp_min(1)).tolist())  # one sync
        step_losses = plosses
        if lk:  # masked means over this micro-batch's supervised positions (eps as the reference's)
            count = out["accept_count"].clamp_min(1e-8)
            acceptance, log_acceptance = out["accept_sum"] / count, out["log_accept_sum"] / count
            step_losses = lk_step_losses(o.loss, plosses, acceptance, log_acceptance, o.kl_scale, o.kl_decay)
            for k in range(plosses.shape[0]):
                ratios[f"acceptance_{k}"] = (out["accept_sum"][k].detach(), out["accept_count"][k])
        return LossOutput(loss=weighted_total(step_losses, o.decay), metrics=metrics, ratio_metrics=ratios)

    # ------------------------------------------------------------------ checkpoints

    def extra_state(self, draft: Any) -> dict:
        """The draft vocabulary (JSON-safe) and where it came from."""
        model = unwrap(draft)
        return {"vocab_mapping": {"d2t": model.d2t.cpu().tolist(), "vocab_size": int(model.t2d.numel()),
                                  **model.vocab_provenance}}

    def load_extra_state(self, draft: Any, state: dict) -> None:
        """Reuse the saved draft vocabulary instead of the one computed from this run's corpus."""
        from specforge_eagle3.vocab import VocabMapping

        saved = state.get("vocab_mapping")
        if saved is None:
            return
        model = unwrap(draft)
        mapping = VocabMapping.from_d2t(saved["d2t"], int(saved["vocab_size"]))
        model.set_vocab(mapping.d2t().to(model.d2t.device), mapping.t2d().to(model.t2d.device))
        old, new = saved.get("corpus_hash"), model.vocab_provenance.get("corpus_hash")
        if old and new and old != new:
            log.info("keeping the checkpoint's draft vocabulary (corpus %s), not this corpus's (%s)", old, new)
        model.vocab_provenance = {k: v for k, v in saved.items() if k not in ("d2t", "vocab_size")}

    # ------------------------------------------------------------------ decoding

    def begin_decode(self, draft: Any, prompt_ids: Sequence[int], features: SampleFeatures) -> Any:
        from specforge_eagle3 import decode

        return decode.begin_decode(unwrap(draft), prompt_ids, features, use_cache=self.options.draft_kv_cache)

    def propose(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: SampleFeatures,
                k: int) -> list[int]:
        from specforge_eagle3 import decode

        return decode.propose(unwrap(draft), accepted_ids, features, k, state)

    def propose_tree(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: SampleFeatures,
                     shape: TreeShape) -> DraftTree:
        from specforge_eagle3 import decode

        return decode.propose_tree(unwrap(draft), accepted_ids, features, shape, state)

    # ------------------------------------------------------------------ export

    def export(self, draft: Any, out_dir: Path, fmt: str) -> dict:
        """``sglang``: what SGLang's LlamaForCausalLMEagle3 loads; ``hf``: the same plus the
        target's embedding (``embed_tokens.weight``), a self-contained directory for warm starts."""
        from specforge_eagle3 import export

        return export.export_draft(unwrap(draft), Path(out_dir), fmt)

    def load_export(self, export_dir: Path, info: TargetInfo) -> Eagle3Draft:
        from specforge_eagle3 import export

        return export.load_export(Path(export_dir), info, ttt_length=self.options.ttt_length)
