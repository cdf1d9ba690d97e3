"""``DFlashStrategy``: the Strategy contract for DFlash (block-parallel drafting with KV injection).

Torch-free at import (``specforge run --plan`` builds the strategy and prints its feature
request); the tensor modules are imported inside the methods that train, decode or export.

Extension points for methods built on DFlash (Domino, DSpark), each a documented public method
a subclass may override; everything else (anchors, masks, blocks, collation, the decoding loop,
the export writer) stays DFlash's own:

- ``config_class`` / ``config_fields(info)``: the draft's config record and its fields;
- ``model_class()`` / ``model_kwargs()``: the draft module and its constructor keywords;
- ``block_targets(batch, anchors, keep, cfg)``: what each block slot is trained to predict;
- ``model_inputs(targets)``: the keyword arguments the draft's forward takes besides the blocks;
- ``reduce(out, targets, keep, ctx)``: the loss and metrics from the draft's per-slot outputs.

On the draft (``DFlashDraftModel``), a subclass adds its modules in ``build_extra_modules``,
initialises them in ``init_module``, reads the backbone's per-slot output from
``hidden(hidden_states, block_ids, anchors, keep)`` [B, N·bs, H], and decides what one decoding
round proposes in ``draft_block(context, first_token)`` (DFlash: the greedy tokens of slots
1..bs-1; Domino and DSpark fill the block slot by slot, DSpark all bs slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specforge.api import DataStats, FeatureRequest, LossOutput, StepContext, TargetInfo, UserError, resolve_mask_token
from specforge_dflash.draft_config import DFlashConfig
from specforge_dflash.layer_ids import resolve_target_layer_ids
from specforge_dflash.options import DFlashOptions


class DFlashStrategy:
    """Block-parallel drafting: bs-1 tokens per draft forward, context injected as keys/values."""

    name = "dflash"
    config_class: type[DFlashConfig] = DFlashConfig

    def __init__(self, options: DFlashOptions | None = None) -> None:
        self.options = options if options is not None else DFlashOptions()
        if self.options.loss != "dflash" and type(self).reduce is not DFlashStrategy.reduce:
            raise UserError(f"strategy.loss={self.options.loss} is DFlash's D-PACE objective; {self.name} trains "
                            f"its own loss, so leave strategy.loss unset (dflash)")

    # ------------------------------------------------------------------ target and draft

    def target_layer_ids(self, info: TargetInfo) -> tuple[int, ...]:
        o = self.options
        return resolve_target_layer_ids(o.target_layer_ids, o.num_draft_layers, info.num_layers)

    def feature_request(self, info: TargetInfo) -> FeatureRequest:
        return FeatureRequest(layers=self.target_layer_ids(info))

    def plan_notes(self, info: TargetInfo) -> list[str]:
        """The mask token this target gives (``run --plan`` shows it, and refuses a target without one)."""
        token = resolve_mask_token(info, self.options.mask_token_id)
        return [f"mask token {token.id} ({token.source})"]

    def mask_token_id(self, info: TargetInfo) -> int:
        """The mask token drafted slots start from (the option, else resolved from the target)."""
        return resolve_mask_token(info, self.options.mask_token_id).id

    def draft_config(self, info: TargetInfo) -> DFlashConfig:
        """The draft's shape for this target: Qwen3 dims of the target, layers from the options."""
        return self.config_class(**self.config_fields(info))

    def config_fields(self, info: TargetInfo) -> dict[str, Any]:
        """Extension point: the ``config_class`` fields for this target (a subclass adds its own)."""
        from specforge.api.nn import rope_parameters  # imports torch: only when a draft is built

        o = self.options
        why = f"{self.name} copies the target's shape"
        return {
            "hidden_size": info.hidden_size,
            "intermediate_size": info.require("intermediate_size", why),
            "num_hidden_layers": o.num_draft_layers,
            "num_attention_heads": info.require("num_attention_heads", why),
            "num_key_value_heads": info.require("num_key_value_heads", why),
            "head_dim": info.require("head_dim", why),
            "vocab_size": info.vocab_size,
            "num_target_layers": info.num_layers,
            "target_layer_ids": self.target_layer_ids(info),
            "mask_token_id": self.mask_token_id(info),
            "block_size": o.block_size,
            "rms_norm_eps": info.require("rms_norm_eps", why),
            "rope_parameters": rope_parameters(info.config),
            "max_position_embeddings": info.max_position_embeddings or 4096,
            "layer_types": o.resolved_layer_types(),
            "sliding_window": o.sliding_window,
        }

    def model_class(self) -> type:
        """Extension point: the draft module (``DFlashDraftModel`` or a subclass)."""
        from specforge_dflash.model import DFlashDraftModel
        return DFlashDraftModel

    def model_kwargs(self) -> dict[str, Any]:
        """Extension point: keywords for ``model_class()`` besides config and frozen weights."""
        return {"attention": self.options.attention, "loss_chunk_blocks": self.options.loss_chunk_blocks}

    def build_draft(self, info: TargetInfo, stats: DataStats | None = None) -> Any:
        embed = info.require("embed_weight", f"{self.name} drafts with the target's frozen embedding")
        head = info.require("lm_head_weight", f"{self.name} scores blocks with the target's frozen lm_head")
        return self.model_class()(self.draft_config(info), embed, head, **self.model_kwargs())

    def draft_layers(self, draft: Any) -> list[Any]:
        """The decoder layers: FSDP2 shards each, activation checkpointing recomputes each."""
        from specforge.api import unwrap
        return list(unwrap(draft).layers)

    # ------------------------------------------------------------------ training

    def collate(self, samples: Sequence[dict]) -> dict:
        from specforge_dflash.collate import collate_samples
        return collate_samples(samples)

    def loss(self, draft: Any, batch: dict, ctx: StepContext) -> LossOutput:
        from specforge.api import unwrap
        from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors

        cfg = unwrap(draft).config
        seeds = [anchor_seed(int(h), ctx.step, ctx.micro_step) for h in batch["sample_hash"].tolist()]
        anchors, keep = sample_anchors(batch["loss_mask"], self.options.num_anchors, seeds)
        targets = self.block_targets(batch, anchors, keep, cfg)
        out = draft(hidden_states=batch["hidden_states"],
                    block_ids=noise_blocks(batch["input_ids"], anchors, keep, cfg.block_size, cfg.mask_token_id),
                    anchors=anchors, keep=keep, **self.model_inputs(targets))
        return self.reduce(out, targets, keep, ctx)

    def block_targets(self, batch: dict, anchors: Any, keep: Any, cfg: DFlashConfig) -> Any:
        """Extension point: per-slot labels and weights. DFlash: same-position labels, slot 0
        unsupervised, weights exp(-(k-1)/γ)."""
        from specforge_dflash.labels import block_targets
        return block_targets(batch["input_ids"], batch["loss_mask"], anchors, keep, cfg.block_size,
                             gamma=self.options.loss_decay_gamma, label_shift=0,
                             supervise_first_slot=False, decay_offset=1)

    def model_inputs(self, targets: Any) -> dict[str, Any]:
        """Extension point: what the draft's forward takes from the targets (DFlash: the labels)."""
        return {"labels": targets.labels}

    def reduce(self, out: dict, targets: Any, keep: Any, ctx: StepContext) -> LossOutput:
        """Extension point: the loss and metrics from the draft's per-slot outputs (``strategy.loss``:
        the dflash token mean, or a D-PACE per-sample mean)."""
        from specforge_dflash.loss import dflash_loss_output, dpace_loss_output
        if self.options.loss == "dflash":
            return dflash_loss_output(out, targets, keep)
        return dpace_loss_output(out, targets, keep, self.options.loss, self.options.dpace_alpha)

    # ------------------------------------------------------------------ checkpoints

    def extra_state(self, draft: Any) -> dict:
        """The draft's config (layer ids, mask token, block size): a resumed run must match it."""
        from specforge.api import unwrap
        return {"draft_config": unwrap(draft).config.to_dict()}

    def load_extra_state(self, draft: Any, state: dict) -> None:
        from specforge.api import unwrap
        saved = state.get("draft_config")
        if saved is None:
            return
        current = unwrap(draft).config.to_dict()
        diff = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current) if saved.get(k) != current.get(k)}
        if diff:
            lines = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise UserError(f"the checkpoint's draft differs from the one these options build ({lines}); "
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
        """``sglang``: the DFlashDraftModel directory SGLang loads (no embedding, no lm_head)."""
        from specforge_dflash.export import export_draft
        return export_draft(draft, Path(out_dir), fmt)

    def load_export(self, export_dir: Path, info: TargetInfo) -> Any:
        from specforge_dflash.export import load_export
        return load_export(Path(export_dir), info, self.config_class, self.model_class(), **self.model_kwargs())
