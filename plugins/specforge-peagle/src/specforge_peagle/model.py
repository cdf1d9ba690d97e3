"""The P-EAGLE draft: a trainable embedding, ``fc`` over fused target features, a learned
``mask_hidden``, an EAGLE3-style first layer then standard Llama layers, ``norm``, ``lm_head``
over the draft vocabulary, and the ``d2t``/``t2d`` maps.

One forward scores a flat list of (anchor, depth) elements (see ``mask.py``): element (a, 0)
embeds the real next token x_{a+1} and fuses the target features a_a; element (a, d > 0) embeds
the mask token and ``mask_hidden`` (fused by the same ``fc``); both sit at RoPE position a + d
and are trained toward the target's distribution at a + d (its prediction of x_{a+d+2}).
Training feeds COD-sampled elements; drafting feeds the context plus one chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from specforge.api.nn import RMSNorm, RotaryEmbedding
from specforge_eagle3.teacher import build_teacher, shift_left
from specforge_eagle3.vocab import DraftVocabBuffers
from specforge_peagle.config import PeagleConfig
from specforge_peagle.layers import FirstLayer, StandardLayer
from specforge_peagle.loss import depth_accuracy, soft_cross_entropy_sum
from specforge_peagle.mask import peagle_mask


class PeagleDraft(DraftVocabBuffers, nn.Module):
    """The trainable draft plus the frozen target lm_head its training teacher needs."""

    def __init__(self, cfg: PeagleConfig, embed_weight: torch.Tensor | None = None,
                 target_head_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = cfg
        h, v, vd = cfg.hidden_size, cfg.vocab_size, cfg.draft_vocab_size
        dtype = torch.get_default_dtype()
        if embed_weight is not None and tuple(embed_weight.shape) != (v, h):
            raise ValueError(f"target embedding has shape {tuple(embed_weight.shape)}, expected ({v}, {h})")
        # Trainable, starting from the target's rows (empty when an export's weights will follow).
        start = embed_weight.detach().to(dtype).clone() if embed_weight is not None else torch.empty(v, h)
        self.embed_tokens = nn.Embedding(v, h, _weight=start)
        self.fc = nn.Linear(cfg.feature_size, h, bias=False)
        self.mask_hidden = nn.Parameter(torch.randn(1, 1, cfg.feature_size))
        self.layers = nn.ModuleList([FirstLayer(cfg), *(StandardLayer(cfg) for _ in range(cfg.num_layers - 1))])
        self.norm = RMSNorm(h, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(h, vd, bias=False)
        self.target_head: nn.Linear | None = None
        if target_head_weight is not None:
            if tuple(target_head_weight.shape) != (v, h):
                raise ValueError(f"target lm_head has shape {tuple(target_head_weight.shape)}, expected ({v}, {h})")
            self.target_head = nn.Linear(h, v, bias=False, device="meta")
            self.target_head.weight = nn.Parameter(target_head_weight.detach().to(dtype).clone(), requires_grad=False)
        self.register_buffer("d2t", torch.zeros(vd, dtype=torch.int64))  # identity until set
        self.register_buffer("t2d", torch.zeros(v, dtype=torch.bool))
        self.t2d[:vd] = True
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope, cfg.max_position_embeddings)
        self.vocab_provenance: dict[str, Any] = {}
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight.requires_grad:
                nn.init.normal_(module.weight, mean=0.0, std=cfg.initializer_range)

    # ------------------------------------------------------------ the element forward

    def element_logits(self, next_tokens: torch.Tensor, features: torch.Tensor, anchors: torch.Tensor,
                       depths: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """Draft-vocab logits [B, N, Vd] of the elements.

        next_tokens [B, S]: position t holds x_{t+1}; features [B, S, 3·H]: a_t; anchors, depths,
        documents [B, N] (documents -1: a padding element). Element positions must be < S.
        """
        positions = anchors + depths  # [B, N]
        real = (depths == 0) & (documents >= 0)
        at = torch.where(real, positions, 0)  # padding/mask elements read position 0 (then replaced)
        tokens = torch.where(real, next_tokens.gather(1, at), self.config.mask_token_id)  # [B, N]
        width = features.shape[-1]
        feats = features.to(self.fc.weight.dtype).gather(1, at[..., None].expand(-1, -1, width))  # [B, N, 3H]
        feats = torch.where(real[..., None], feats, self.mask_hidden.to(feats.dtype))
        hidden = self.fc(feats)  # [B, N, H]
        embeds = self.embed_tokens(tokens).to(hidden.dtype)
        cos, sin = self.rotary(positions, hidden.dtype)
        mask = peagle_mask(anchors, depths, documents)  # [B, 1, N, N]
        hidden = self.layers[0](embeds, hidden, cos, sin, mask)
        for layer in self.layers[1:]:
            hidden = layer(hidden, cos, sin, mask)
        return self.lm_head(self.norm(hidden))

    # ------------------------------------------------------------ training forward

    def forward(self, batch: Mapping[str, torch.Tensor], anchors: torch.Tensor, depths: torch.Tensor,
                documents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of a batch on its sampled elements.

        batch: input_ids, loss_mask, attention_mask [B, S]; hidden_states [B, S, 3·H]; last_hidden
        [B, S, H]. Returns the masked soft-CE sum and its weight, and per-depth hits/counts [D].
        """
        if self.target_head is None:
            raise ValueError("this draft has no target lm_head (TargetInfo.lm_head_weight was None), "
                             "so it cannot compute the training teacher")
        attention_mask = batch["attention_mask"]
        teacher = build_teacher(batch["last_hidden"], batch["loss_mask"], attention_mask,
                                self.target_head.weight, self.t2d, 0)
        logits = self.element_logits(shift_left(batch["input_ids"]), batch["hidden_states"], anchors, depths,
                                     documents)  # [B, N, Vd]
        positions = torch.where(documents >= 0, anchors + depths, 0)  # [B, N]
        vd = teacher.probs.shape[-1]
        probs = teacher.probs.gather(1, positions[..., None].expand(-1, -1, vd))  # [B, N, Vd]
        weight = teacher.position_mask.gather(1, positions) * (documents >= 0)  # [B, N]: m·t2d[argmax]
        target_ids = teacher.target_ids.gather(1, positions)
        hits, counts = depth_accuracy(self.to_target_ids(logits.detach().argmax(-1)), target_ids, weight, depths,
                                      self.config.num_depths)
        return {"ce_sum": soft_cross_entropy_sum(logits, probs, weight), "weight": weight.sum(),
                "hits": hits, "counts": counts}
