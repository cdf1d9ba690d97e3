"""``DFlashStrategy``: the Strategy contract for DFlash (facts §3).

Torch-free at import (``specforge run --plan`` builds the strategy and prints its feature
request); the tensor modules are imported inside the methods that train, decode or export.
Domino subclasses this class and overrides the ``_``-prefixed steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specforge.contracts import DataStats, FeatureRequest, LossOutput, StepContext, TargetInfo
from specforge_dflash.draft_config import DFlashConfig
from specforge_dflash.layer_ids import resolve_mask_token_id, resolve_target_layer_ids
from specforge_dflash.options import DFlashOptions


def _target_dim(info: TargetInfo, field: str, config_key: str) -> int:
    value = getattr(info, field) or info.config.get(config_key)
    if not value:
        raise ValueError(f"target info for {info.model_path!r} has no {field}; the target engine must "
                         f"report it (config key {config_key!r})")
    return int(value)


class DFlashStrategy:
    """Block-parallel drafting: bs-1 tokens per draft forward, context injected as keys/values."""

    name = "dflash"
    config_class: type[DFlashConfig] = DFlashConfig

    def __init__(self, options: DFlashOptions | None = None) -> None:
        self.options = options if options is not None else DFlashOptions()

    # ------------------------------------------------------------------ target and draft

    def target_layer_ids(self, info: TargetInfo) -> tuple[int, ...]:
        o = self.options
        return resolve_target_layer_ids(o.target_layer_ids, o.num_draft_layers, info.num_layers)

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        return FeatureRequest(layers=self.target_layer_ids(info))

    def draft_config(self, info: TargetInfo) -> DFlashConfig:
        """The draft's shape for this target: Qwen3 dims of the target, layers from the options."""
        return self.config_class(**self._config_fields(info))

    def _config_fields(self, info: TargetInfo) -> dict[str, Any]:
        from specforge.nn.rope import rope_parameters  # imports torch: only when a draft is built

        o = self.options
        heads = _target_dim(info, "num_attention_heads", "num_attention_heads")
        return {
            "hidden_size": info.hidden_size,
            "intermediate_size": _target_dim(info, "intermediate_size", "intermediate_size"),
            "num_hidden_layers": o.num_draft_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": info.num_key_value_heads or info.config.get("num_key_value_heads") or heads,
            "head_dim": info.head_dim or info.config.get("head_dim") or info.hidden_size // heads,
            "vocab_size": info.vocab_size,
            "num_target_layers": info.num_layers,
            "target_layer_ids": self.target_layer_ids(info),
            "mask_token_id": resolve_mask_token_id(o.mask_token_id, info.mask_token_id, info.vocab_size),
            "block_size": o.block_size,
            "rms_norm_eps": info.rms_norm_eps,
            "rope_parameters": rope_parameters(info.config),
            "max_position_embeddings": info.max_position_embeddings,
            "layer_types": o.resolved_layer_types(),
            "sliding_window": o.sliding_window,
        }

    def model_class(self) -> type:
        from specforge_dflash.model import DFlashDraftModel
        return DFlashDraftModel

    def _model_kwargs(self) -> dict[str, Any]:
        return {"attention": self.options.attention, "loss_chunk_blocks": self.options.loss_chunk_blocks}

    def build_draft(self, info: TargetInfo, stats: DataStats | None = None) -> Any:
        return self.model_class()(self.draft_config(info), info.embed_weight, info.lm_head_weight,
                                  **self._model_kwargs())

    # ------------------------------------------------------------------ training

    def collate(self, samples: Sequence[dict]) -> dict:
        from specforge_dflash.collate import collate_samples
        return collate_samples(samples)

    def loss(self, draft: Any, batch: dict, ctx: StepContext) -> LossOutput:
        from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors
        from specforge_dflash.decode import unwrap

        cfg = unwrap(draft).config
        seeds = [anchor_seed(int(h), ctx.step, ctx.micro_step) for h in batch["sample_hash"].tolist()]
        anchors, keep = sample_anchors(batch["loss_mask"], self.options.num_anchors, seeds)
        targets = self._targets(batch, anchors, keep, cfg)
        out = draft(hidden_states=batch["hidden_states"],
                    block_ids=noise_blocks(batch["input_ids"], anchors, keep, cfg.block_size, cfg.mask_token_id),
                    anchors=anchors, keep=keep, **self._target_inputs(targets))
        return self._reduce(out, targets, keep, ctx)

    def _targets(self, batch: dict, anchors: Any, keep: Any, cfg: DFlashConfig) -> Any:
        """Same-position labels, slot 0 unsupervised, weights exp(-(k-1)/γ)."""
        from specforge_dflash.labels import block_targets
        return block_targets(batch["input_ids"], batch["loss_mask"], anchors, keep, cfg.block_size,
                             gamma=self.options.loss_decay_gamma, label_shift=0,
                             supervise_first_slot=False, decay_offset=1)

    def _target_inputs(self, targets: Any) -> dict[str, Any]:
        return {"labels": targets.labels}

    def _reduce(self, out: dict, targets: Any, keep: Any, ctx: StepContext) -> LossOutput:
        from specforge_dflash.loss import dflash_loss_output
        return dflash_loss_output(out, targets, keep)

    # ------------------------------------------------------------------ checkpoints

    def extra_state(self, draft: Any) -> dict:
        """The draft's config (layer ids, mask token, block size): a resumed run must match it."""
        from specforge_dflash.decode import unwrap
        return {"draft_config": unwrap(draft).config.to_dict()}

    def load_extra_state(self, draft: Any, state: dict) -> None:
        from specforge_dflash.decode import unwrap
        saved = state.get("draft_config")
        if saved is None:
            return
        current = unwrap(draft).config.to_dict()
        diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current) if saved.get(k) != current.get(k)}
        if diff:
            lines = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"the checkpoint's draft differs from the one these options build ({lines}); "
                             "resume with the options the run was started with")

    # ------------------------------------------------------------------ decoding

    def begin_decode(self, draft: Any, prompt_ids: Sequence[int], features: dict) -> Any:
        from specforge_dflash.decode import DecodeState
        return DecodeState(prompt_len=len(prompt_ids))

    def propose(self, draft: Any, state: Any, accepted_ids: Sequence[int], features: dict, k: int) -> list[int]:
        from specforge_dflash.decode import propose_block
        return propose_block(draft, state, accepted_ids, features, k)

    # ------------------------------------------------------------------ export

    def export(self, draft: Any, out_dir: Path, fmt: str) -> dict:
        from specforge_dflash.export import export_draft
        return export_draft(draft, Path(out_dir), fmt)

    def load_export(self, export_dir: Path, info: TargetInfo) -> Any:
        from specforge_dflash.export import load_export
        return load_export(Path(export_dir), info, self.config_class, self.model_class(),
                           **self._model_kwargs())
