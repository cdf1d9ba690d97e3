"""The EAGLE3 draft: one Llama-style decoder layer over [token embedding ; fused target features].

Weights are named as SGLang's ``LlamaForCausalLMEagle3`` loads them (``midlayer.*``, ``fc``,
``norm``, ``lm_head``, ``d2t``, ``t2d``). The token embedding and the target's lm_head are frozen
copies of the target's; they are not trained, not checkpointed and not exported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from specforge.api.nn import RMSNorm, RotaryEmbedding, SwiGLUMLP
from specforge_eagle3.attention import Eagle3Attention, TTTCache
from specforge_eagle3.loss import fused_soft_cross_entropy, fused_soft_cross_entropy_acceptance, prediction_hits
from specforge_eagle3.mlp import gated_mlp
from specforge_eagle3.norm import rms_norm
from specforge_eagle3.teacher import build_teacher, shift_left
from specforge_eagle3.vocab import DraftVocabBuffers


@dataclass(frozen=True)
class Eagle3Config:
    """Shape of a draft; everything ``config.json`` records, nothing learned."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    draft_vocab_size: int
    target_hidden_size: int
    aux_layer_ids: tuple[int, ...]
    rope: Mapping[str, Any]
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    ttt_length: int = 7
    fc_norm: bool = False  # EAGLE3.1: RMSNorm per target-layer chunk before fc
    norm_output: bool = True  # logits from lm_head(norm(hidden)); False: lm_head(hidden)
    target_config: Mapping[str, Any] = field(default_factory=dict)  # token ids etc. copied to exports


class Eagle3DecoderLayer(nn.Module):
    """One TTT step: ``g' = g + attn([norm(e) ; norm(g)])``, ``out = g' + mlp(norm(g'))``."""

    def __init__(self, cfg: Eagle3Config) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.input_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.hidden_norm = RMSNorm(h, cfg.rms_norm_eps)
        self.self_attn = Eagle3Attention(h, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        self.post_attention_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.mlp = SwiGLUMLP(h, cfg.intermediate_size, cfg.hidden_act)
        self.hidden_act = cfg.hidden_act

    def forward(self, embeds: torch.Tensor, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: TTTCache, mask0: torch.Tensor | None = None) -> torch.Tensor:
        """embeds, hidden [B, Sq, H] -> [B, Sq, H] (pre-final-norm: the next step's hidden)."""
        x = torch.cat([rms_norm(self.input_layernorm, embeds), rms_norm(self.hidden_norm, hidden)],
                      dim=-1)  # [B, Sq, 2H]
        hidden = hidden + self.self_attn(x, cos, sin, cache, mask0)
        w_gate_up = cache.shared_weight("gate_up", self.mlp.gate_proj.weight, self.mlp.up_proj.weight)
        return hidden + gated_mlp(self.mlp, rms_norm(self.post_attention_layernorm, hidden), self.hidden_act,
                                  w_gate_up)


class Eagle3Draft(DraftVocabBuffers, nn.Module):
    """The trainable draft plus the frozen target pieces it needs (embedding, teacher lm_head)."""

    def __init__(self, cfg: Eagle3Config, embed_weight: torch.Tensor,
                 target_head_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = cfg
        h, v, vd = cfg.hidden_size, cfg.vocab_size, cfg.draft_vocab_size
        if tuple(embed_weight.shape) != (v, h):
            raise ValueError(f"target embedding has shape {tuple(embed_weight.shape)}, expected ({v}, {h})")
        dtype = torch.get_default_dtype()
        # frozen copies, not initialised first: a 150k-row embedding takes seconds to randomise
        self.embed_tokens = nn.Embedding(v, h, _weight=embed_weight.detach().to(dtype).clone(), _freeze=True)
        self.fc = nn.Linear(len(cfg.aux_layer_ids) * cfg.target_hidden_size, h, bias=False)
        self.fc_norm: nn.ModuleList | None = None
        if cfg.fc_norm:
            self.fc_norm = nn.ModuleList(RMSNorm(cfg.target_hidden_size, cfg.rms_norm_eps) for _ in cfg.aux_layer_ids)
        self.midlayer = Eagle3DecoderLayer(cfg)
        self.norm = RMSNorm(h, cfg.rms_norm_eps)
        if not cfg.norm_output:  # unused, but SGLang loads norm.weight: ones, frozen (DDP refuses idle parameters)
            self.norm.weight.requires_grad_(False)
        self.lm_head = nn.Linear(h, vd, bias=False)
        self.target_head: nn.Linear | None = None
        if target_head_weight is not None:
            if tuple(target_head_weight.shape) != (v, cfg.target_hidden_size):
                raise ValueError(f"target lm_head has shape {tuple(target_head_weight.shape)}, "
                                 f"expected ({v}, {cfg.target_hidden_size})")
            self.target_head = nn.Linear(cfg.target_hidden_size, v, bias=False, device="meta")
            self.target_head.weight = nn.Parameter(target_head_weight.detach().to(dtype).clone(),
                                                   requires_grad=False)
        self.register_buffer("d2t", torch.zeros(vd, dtype=torch.int64))  # identity until set
        self.register_buffer("t2d", torch.zeros(v, dtype=torch.bool))
        self.t2d[:vd] = True
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.rope, cfg.max_position_embeddings)
        self.vocab_provenance: dict[str, Any] = {}
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight.requires_grad:
                nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    # ------------------------------------------------------------ pieces (decoding uses them)

    def fuse(self, features: torch.Tensor) -> torch.Tensor:
        """Concatenated target layers [B, S, 3*Ht] -> the step-0 hidden [B, S, H] (EAGLE3.1 first
        normalises each layer's chunk [B, S, Ht] with its own ``fc_norm``)."""
        features = features.to(self.fc.weight.dtype)
        if self.fc_norm is not None:
            chunks = features.chunk(len(self.fc_norm), dim=-1)
            features = torch.cat([rms_norm(norm, c) for norm, c in zip(self.fc_norm, chunks)], dim=-1)
        return self.fc(features)

    def head_input(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the draft lm_head reads [B, S, H]: the final-normed hidden, or the hidden itself
        without ``norm_output``; the recurrence carries the un-normed hidden either way."""
        return rms_norm(self.norm, hidden) if self.config.norm_output else hidden

    def step_hidden(self, input_ids: torch.Tensor, hidden: torch.Tensor, position_ids: torch.Tensor,
                    cache: TTTCache, mask0: torch.Tensor | None = None) -> torch.Tensor:
        """One TTT step: ids [B, Sq], hidden [B, Sq, H], positions [B, Sq] -> the next hidden
        [B, Sq, H] before the final norm. ``mask0`` [B|1, 1, Sq, Sk]: an explicit step-0 mask (the
        dense path); None: the TTT masks (causal, or the last row when Sq == 1)."""
        embeds = self.embed_tokens(input_ids).to(hidden.dtype)
        cos, sin = self.rotary(position_ids, hidden.dtype)
        return self.midlayer(embeds, hidden, cos, sin, cache, mask0)

    def step(self, input_ids: torch.Tensor, hidden: torch.Tensor, position_ids: torch.Tensor,
             cache: TTTCache, mask0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``step_hidden`` plus the draft logits: (next hidden [B, Sq, H], logits [B, Sq, Vd])."""
        out = self.step_hidden(input_ids, hidden, position_ids, cache, mask0)
        return out, self.lm_head(self.head_input(out))

    # ------------------------------------------------------------ training forward

    def forward(self, batch: Mapping[str, torch.Tensor], acceptance: bool = False) -> dict[str, torch.Tensor]:
        """The whole TTT unroll of a batch; returns per-step loss terms [T] for the strategy's loss.

        batch: input_ids, loss_mask, attention_mask [B, S]; hidden_states [B, S, 3*Ht];
        last_hidden [B, S, Ht]; optional position_ids [B, S]. ``acceptance`` (the LK losses) adds,
        per step, Σ pm·α and Σ pm·log α (differentiable) and Σ pm, with α the expected acceptance.
        """
        if self.target_head is None:
            raise ValueError("this draft has no target lm_head (TargetInfo.lm_head_weight was None), "
                             "so it cannot compute the training teacher")
        input_ids = batch["input_ids"]
        bsz, seq_len = input_ids.shape
        attention_mask = batch.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = batch.get("position_ids")
        if positions is None:
            positions = torch.arange(seq_len, device=input_ids.device).expand(bsz, seq_len)
        steps = self.config.ttt_length
        teacher = build_teacher(batch["last_hidden"], batch["loss_mask"], attention_mask,
                                self.target_head.weight, self.t2d, steps, with_mass=acceptance)
        ids = shift_left(input_ids)  # position t embeds x_{t+1}
        hidden = self.fuse(batch["hidden_states"])  # [B, S, H]
        cache = TTTCache(key_mask=padding_keys(attention_mask))
        plosses, correct, counted, accepted = [], [], [], []
        for k in range(steps):
            hidden = self.step_hidden(shift_left(ids, k), hidden, positions + k, cache)
            target = teacher.step(k)
            if acceptance:
                ploss, pred, alpha = fused_soft_cross_entropy_acceptance(
                    self.head_input(hidden), self.lm_head.weight, target.probs, target.mass, target.position_mask)
                accepted.append(acceptance_sums(alpha, target.position_mask))
            else:
                ploss, pred = fused_soft_cross_entropy(self.head_input(hidden), self.lm_head.weight, target.probs,
                                                       target.position_mask)
            hits, total = prediction_hits(pred, self.d2t, target.target_ids, target.loss_mask)
            plosses.append(ploss)
            correct.append(hits)
            counted.append(total)
        out = {"ploss": torch.stack(plosses), "correct": torch.stack(correct), "counted": torch.stack(counted)}
        if acceptance:
            for i, name in enumerate(("accept_sum", "log_accept_sum", "accept_count")):
                out[name] = torch.stack([terms[i] for terms in accepted])
        return out


def acceptance_sums(alpha: torch.Tensor,
                    position_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Σ pm·α, Σ pm·log α, Σ pm) over α [B, S]; log α counts 0 where α = 0 (and passes no gradient)."""
    m = position_mask.to(alpha.dtype)
    log_alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha)).log()  # no 0·inf in backward
    return (alpha * m).sum(), (log_alpha * m).sum(), m.sum()


def padding_keys(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The key mask TTT attention needs: None when every row is real tokens then padding (right
    padding: padded positions never reach the loss, so letting padded queries see padded keys
    changes nothing), else the mask itself [B, S] bool."""
    real = attention_mask.bool()
    if bool((real[:, 1:] <= real[:, :-1]).all()):  # non-increasing along S: right padding (or none)
        return None
    return real
