"""The DSpark draft: the DFlash draft plus ``markov_head`` and ``confidence_head``.

Per block slot, logits = target lm_head(h) + Markov bias(x_prev, h). The backbone is DFlash's
``hidden(...)``; the head side is DSpark's own. With labels, ``forward`` returns per-slot loss
terms computed ``loss_chunk_blocks`` kept blocks at a time under activation checkpointing, so
the [blocks, bs, V] logits of the draft and of the teacher never exist for all blocks at once,
forward or backward, and the result equals one full pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from specforge_dflash.model import DFlashDraftModel
from specforge_dspark.draft_config import DSparkConfig
from specforge_dspark.heads import ConfidenceHead, build_markov_head

INIT_STD = 0.02  # the initializer_range of the shipped configs
HALF = (torch.float16, torch.bfloat16)
TEACHER_TERMS = ("l1", "accept", "agree", "teacher_top1", "draft_top1")
CONFIDENCE_TERMS = ("confidence_bce", "confidence_error")


class DSparkDraftModel(DFlashDraftModel):
    """``forward`` also takes ``prev_ids`` [B, N, bs] (x_{p+k}) and, for the L1 and confidence terms,
    ``teacher_hidden`` [B, N, bs, H] (the target's last hidden state at p+k)."""

    config: DSparkConfig

    def build_extra_modules(self) -> None:
        cfg = self.config
        self.markov_head = (build_markov_head(cfg.markov_head_type, cfg.vocab_size, cfg.markov_rank, cfg.hidden_size)
                            if cfg.markov_rank > 0 else None)
        self.confidence_head = ConfidenceHead(cfg.confidence_width) if cfg.enable_confidence_head else None

    def init_module(self, module: nn.Module) -> None:
        """Embeddings and linear weights from N(0, 0.02), biases zero; the rest as DFlash does."""
        if isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, INIT_STD)
            return
        super().init_module(module)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()

    # ------------------------------------------------------------------ heads

    def slot_logits(self, base_logits: torch.Tensor, hidden: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor:
        """Teacher-forced draft logits [M, bs, V] from base logits, hidden [M, bs, H] and prev ids [M, bs]."""
        if self.markov_head is None:
            return base_logits
        return base_logits + self.markov_head.block_bias(prev_ids, hidden).to(base_logits.dtype)

    def confidence(self, hidden: torch.Tensor, prev_ids: torch.Tensor) -> torch.Tensor | None:
        """Acceptance logits [M, bs], or None without a confidence head."""
        if self.confidence_head is None:
            return None
        features = hidden
        if self.config.confidence_head_with_markov:
            features = torch.cat([hidden, self.markov_head.embed(prev_ids).to(hidden.dtype)], dim=-1)
        return self.confidence_head(features)

    # ------------------------------------------------------------------ forward

    def forward(self, hidden_states: torch.Tensor, block_ids: torch.Tensor, anchors: torch.Tensor,
                keep: torch.Tensor, prev_ids: torch.Tensor, labels: torch.Tensor | None = None,
                teacher_hidden: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Without ``labels``: ``{"logits", "base_logits"}`` [B, N, bs, V] and ``"confidence"`` [B, N, bs].
        With ``labels``: per-slot [B, N, bs] ``ce``, ``correct`` and, given ``teacher_hidden``, ``l1``,
        ``accept`` (1 − ½·l1, clamped), ``agree``, ``teacher_top1``, ``draft_top1`` and with a confidence
        head ``confidence_bce``, ``confidence_error``."""
        B, N = anchors.shape
        h = self.hidden(hidden_states, block_ids, anchors, keep).view(B, N, self.config.block_size, -1)
        if labels is None:
            base = self.lm_head(h)
            flat = (base.flatten(0, 1), h.flatten(0, 1), prev_ids.flatten(0, 1))
            out = {"logits": self.slot_logits(*flat).view_as(base), "base_logits": base}
            confidence = self.confidence(h.flatten(0, 1), prev_ids.flatten(0, 1))
            if confidence is not None:
                out["confidence"] = confidence.view(B, N, -1)
            return out
        inputs = (h, prev_ids, labels) + (() if teacher_hidden is None else (teacher_hidden.to(h.dtype),))
        return dict(zip(self.term_names(teacher_hidden is not None), self._chunked_terms(inputs, keep)))

    def _chunked_terms(self, inputs: tuple[torch.Tensor, ...], keep: torch.Tensor) -> list[torch.Tensor]:
        """``_slot_terms`` over the kept blocks, ``loss_chunk_blocks`` at a time; [B, N, bs] each, zeros
        (False) for unkept blocks."""
        B, N = keep.shape
        idx = keep.flatten().nonzero().squeeze(1)  # [M]
        if idx.numel() == 0:
            raise ValueError("no kept block to compute a loss on")
        flat = [t.flatten(0, 1).index_select(0, idx) for t in inputs]  # [M, bs, ...]
        grad = torch.is_grad_enabled() and flat[0].requires_grad
        chunks = []
        for start in range(0, idx.numel(), self.loss_chunk_blocks):
            args = [t[start:start + self.loss_chunk_blocks] for t in flat]
            chunks.append(checkpoint(self._slot_terms, *args, use_reentrant=False) if grad else self._slot_terms(*args))
        out = []
        for pieces in zip(*chunks):
            part = torch.cat(pieces)  # [M, bs]
            out.append(part.new_zeros((B * N, *part.shape[1:])).index_copy(0, idx, part).view(B, N, -1))
        return out

    def term_names(self, with_teacher: bool) -> tuple[str, ...]:
        names = ("ce", "correct")
        if with_teacher:
            names += TEACHER_TERMS + (CONFIDENCE_TERMS if self.confidence_head is not None else ())
        return names

    def _slot_terms(self, h: torch.Tensor, prev_ids: torch.Tensor, labels: torch.Tensor,
                    teacher: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """One chunk of blocks: h [M, bs, H] -> the ``term_names`` tensors, each [M, bs]."""
        logits = self.slot_logits(self.lm_head(h), h, prev_ids)  # [M, bs, V]
        acc = torch.float32 if logits.dtype in HALF else logits.dtype
        log_probs = torch.log_softmax(logits.to(acc), dim=-1)  # [M, bs, V]
        ce = -log_probs.gather(-1, labels[..., None]).squeeze(-1)  # [M, bs]
        correct = logits.argmax(-1) == labels
        if teacher is None:
            return ce, correct
        with torch.no_grad():
            teacher_probs = torch.softmax(self.lm_head(teacher).to(acc), dim=-1)  # [M, bs, V]
        draft_probs = log_probs.exp()
        l1 = (draft_probs - teacher_probs).abs().sum(-1)  # [M, bs]
        accept = (1.0 - 0.5 * l1.detach()).clamp(0.0, 1.0)  # the exact speculative-sampling acceptance
        with torch.no_grad():
            agree = draft_probs.argmax(-1) == teacher_probs.argmax(-1)
            stats = (agree, teacher_probs.amax(-1), draft_probs.amax(-1))
        terms = (ce, correct, l1, accept, *stats)
        conf = self.confidence(h, prev_ids)
        if conf is None:
            return terms
        conf = conf.to(acc)
        bce = F.binary_cross_entropy_with_logits(conf, accept, reduction="none")
        return (*terms, bce, (conf.detach().sigmoid() - accept).abs())

    # ------------------------------------------------------------------ decoding

    @torch.no_grad()
    def draft_block(self, hidden_states: torch.Tensor, first_token: int) -> torch.Tensor:
        """Greedy tokens for all bs slots after context ``hidden_states`` [S, K·H]: slot k drafts the
        token after slot k-1's, the Markov bias reading each pick in turn."""
        cfg = self.config
        S, device = hidden_states.shape[0], self.fc.weight.device
        block = torch.full((1, cfg.block_size), cfg.mask_token_id, dtype=torch.long, device=device)
        block[0, 0] = first_token
        anchors = torch.tensor([[S]], device=device)
        keep = torch.ones(1, 1, dtype=torch.bool, device=device)
        h = self.hidden(hidden_states[None].to(device), block, anchors, keep)  # [1, bs, H]
        base = self.lm_head(h)  # [1, bs, V]
        if self.markov_head is None:
            return base[0].argmax(-1)
        return self.markov_head.greedy(base, h, block[:, 0])[0]
