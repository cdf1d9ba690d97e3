"""The Domino draft: the DFlash draft plus ``prefix_gru`` and ``embed_proj``."""

from __future__ import annotations

import torch

from specforge_dflash.loss import kept_blocks, scatter_blocks
from specforge_dflash.model import DFlashDraftModel
from specforge_domino.draft_config import DominoConfig
from specforge_domino.head import apply_correction, build_embed_proj, build_prefix_gru, correction_features
from specforge_domino.loss import corrected_head_ce


class DominoDraftModel(DFlashDraftModel):
    """``forward`` also takes ``prev_ids`` [B, N, bs]: the tokens x_{p+k} the GRU reads."""

    config: DominoConfig

    def build_extra_modules(self) -> None:
        cfg = self.config
        self.prefix_gru = build_prefix_gru(cfg.hidden_size, cfg.gru_hidden_dim)
        self.embed_proj = build_embed_proj(cfg.hidden_size, cfg.gru_hidden_dim, cfg.emb_dim, cfg.vocab_size)

    def init_module(self, module: torch.nn.Module) -> None:
        """The GRU's weights from N(0, 0.02) like every linear weight; the rest as DFlash does."""
        if isinstance(module, torch.nn.GRU):
            for p in module.parameters():
                p.normal_(0.0, 0.02)
        else:
            super().init_module(module)

    def correct(self, base_logits: torch.Tensor, hidden: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor:
        """Final logits [M, bs, V] from base logits, draft hidden [M, bs, H] and prev ids [M, bs]."""
        cfg = self.config
        return apply_correction(base_logits, hidden, self.embed_tokens(prev_ids), self.prefix_gru,
                                self.embed_proj, cfg.shift_label, cfg.correction_start)

    def forward(self, hidden_states: torch.Tensor, block_ids: torch.Tensor, anchors: torch.Tensor,
                keep: torch.Tensor, prev_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """Without ``labels``: ``{"logits", "base_logits"}`` [B, N, bs, V]. With ``labels``:
        ``{"ce", "correct", "base_ce", "base_correct"}`` per slot, in chunks."""
        B, N = anchors.shape
        bs = self.config.block_size
        h = self.hidden(hidden_states, block_ids, anchors, keep).view(B, N, bs, -1)
        if labels is None:
            base = self.lm_head(h)
            final = self.correct(base.flatten(0, 1), h.flatten(0, 1), prev_ids.flatten(0, 1))
            return {"logits": final.view_as(base), "base_logits": base}
        idx, (hk, pk, yk) = kept_blocks((h, prev_ids, labels), keep)  # [M, bs, ...]
        cfg = self.config
        feats = correction_features(hk, self.embed_tokens(pk), self.prefix_gru, self.embed_proj, cfg.shift_label,
                                    cfg.correction_start)  # [M, bs, E]
        out = corrected_head_ce(hk, feats, self.lm_head.weight, self.embed_proj[-1].weight, yk,
                                self.loss_chunk_blocks * bs)
        ce, correct, base_ce, base_correct = scatter_blocks(out, idx, keep)
        return {"ce": ce, "correct": correct, "base_ce": base_ce, "base_correct": base_correct}

    @torch.no_grad()
    def draft_block(self, hidden_states: torch.Tensor, first_token: int) -> torch.Tensor:
        """Sequential greedy correction: each slot's pick feeds the GRU of the next."""
        cfg = self.config
        S, bs = hidden_states.shape[0], cfg.block_size
        device = self.fc.weight.device
        block = torch.full((1, bs), cfg.mask_token_id, dtype=torch.long, device=device)
        block[0, 0] = first_token
        anchors = torch.tensor([[S]], device=device)
        keep = torch.ones(1, 1, dtype=torch.bool, device=device)
        h = self.hidden(hidden_states[None].to(device), block, anchors, keep)  # [1, bs, H]
        base = self.lm_head(h)  # [1, bs, V]
        ids = block.clone()
        for t in range(1, bs):
            final = self.correct(base, h, ids)  # the GRU only reads ids before each slot's label
            ids[0, t] = final[0, t - 1 if cfg.shift_label else t].argmax()
        return ids[0, 1:]
