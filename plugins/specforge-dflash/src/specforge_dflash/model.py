"""The DFlash draft: Qwen3-style layers whose keys/values also cover the injected target context.

It owns no embedding and no lm_head: the target's are held frozen (``requires_grad=False``).
``hidden_norm(fc(concat of K target layers))`` is computed once and projected into extra
keys/values by every layer; queries come only from the noise block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from specforge.api.nn import RMSNorm, RotaryEmbedding, SwiGLUMLP, apply_rotary
from specforge_dflash.anchors import block_positions
from specforge_dflash.attention import AttentionPlan, attend, plan_attention
from specforge_dflash.draft_config import DFlashConfig
from specforge_dflash.loss import frozen_head_ce, kept_blocks, scatter_blocks

FROZEN = ("embed_tokens.weight", "lm_head.weight")
INIT_STD = 0.02


class Rope:
    """cos/sin [B, S + N·bs, D]: the context positions, then the block slots' positions."""

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor, context_len: int, block_size: int) -> None:
        self.cos, self.sin, self.context_len, self.block_size = cos, sin, context_len, block_size

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, heads, S + N·bs, D]: the context and every block slot."""
        return apply_rotary(x, self.cos, self.sin)

    def queries(self, x: torch.Tensor, first_slot: int = 0) -> torch.Tensor:
        """x [B, heads, N·(bs - first_slot), D]: slots first_slot.. of each block."""
        S = self.context_len
        cos, sin = (drop_slots(t[:, S:], self.block_size, first_slot) for t in (self.cos, self.sin))
        return apply_rotary(x, cos, sin)


class DFlashAttention(nn.Module):
    """Qwen3 attention (per-head q/k norm, GQA) with the context as extra keys/values."""

    def __init__(self, cfg: DFlashConfig, layer_type: str) -> None:
        super().__init__()
        h, hd = cfg.hidden_size, cfg.head_dim
        self.layer_type, self.head_dim, self.scale = layer_type, hd, hd ** -0.5
        self.block_size = cfg.block_size
        self.q_proj = nn.Linear(h, cfg.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, h, bias=False)
        self.q_norm = RMSNorm(hd, eps=cfg.rms_norm_eps)
        self.k_norm = RMSNorm(hd, eps=cfg.rms_norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], x.shape[-1] // self.head_dim, self.head_dim)  # [B, L, heads, D]

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, rope: Rope, plan: AttentionPlan,
                first_slot: int = 0) -> torch.Tensor:
        """x [B, N·bs, H] -> [B, N·(bs - first_slot), H]: the outputs of slots >= ``first_slot``."""
        B, S = ctx.shape[:2]
        xq = drop_slots(x, self.block_size, first_slot)  # [B, Q', H]: the query slots
        q = rope.queries(self.q_norm(self._heads(self.q_proj(xq))).transpose(1, 2), first_slot)  # [B, Hq, Q', D]
        keyed = torch.cat([ctx, x], dim=1)  # [B, S + N·bs, H]: context and block slots share k/v weights
        k = rope.keys(self.k_norm(self._heads(self.k_proj(keyed))).transpose(1, 2))  # [B, Hkv, S + N·bs, D]
        v = self._heads(self.v_proj(keyed)).transpose(1, 2)
        out = attend(plan, self.layer_type, q, k[:, :, :S], v[:, :, :S], k[:, :, S:], v[:, :, S:], self.scale,
                     first_slot)  # [B, Hq, Q', D]
        return self.o_proj(out.transpose(1, 2).reshape(B, xq.shape[1], -1))


def drop_slots(x: torch.Tensor, block_size: int, first_slot: int) -> torch.Tensor:
    """[B, N·bs, ...] -> [B, N·(bs - first_slot), ...]: the rows of slots >= ``first_slot``."""
    if not first_slot:
        return x
    B, Q = x.shape[:2]
    return x.view(B, Q // block_size, block_size, *x.shape[2:])[:, :, first_slot:].flatten(1, 2)


class DFlashDecoderLayer(nn.Module):
    def __init__(self, cfg: DFlashConfig, layer_type: str) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.self_attn = DFlashAttention(cfg, layer_type)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.mlp = SwiGLUMLP(cfg.hidden_size, cfg.intermediate_size)
        self.block_size = cfg.block_size

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, rope: Rope, plan: AttentionPlan,
                first_slot: int = 0) -> torch.Tensor:
        """x [B, N·bs, H] -> [B, N·(bs - first_slot), H] (every slot still serves as a key)."""
        attn = self.self_attn(self.input_layernorm(x), ctx, rope, plan, first_slot)
        x = drop_slots(x, self.block_size, first_slot) + attn
        return x + self.mlp(self.post_attention_layernorm(x))


class DFlashDraftModel(nn.Module):
    """``forward`` drafts blocks at ``anchors`` from the context features; see ``forward``."""

    def __init__(self, config: DFlashConfig, embed_weight: torch.Tensor, lm_head_weight: torch.Tensor, *,
                 attention: str = "auto", loss_chunk_blocks: int = 128) -> None:
        super().__init__()
        self.config = config
        self.attention_backend = attention
        self.loss_chunk_blocks = loss_chunk_blocks
        h, v = config.hidden_size, config.vocab_size
        for name, w in (("embed_weight", embed_weight), ("lm_head_weight", lm_head_weight)):
            if w is None or tuple(w.shape) != (v, h):
                got = None if w is None else tuple(w.shape)
                raise ValueError(f"target {name} must be [{v}, {h}] (vocab, hidden), got {got}; the target "
                                 "engine's info() must provide the frozen embedding and lm_head")
        self.fc = nn.Linear(config.context_width, h, bias=False)
        self.hidden_norm = RMSNorm(h, eps=config.rms_norm_eps)
        self.layers = nn.ModuleList(DFlashDecoderLayer(config, t) for t in config.layer_types)
        self.norm = RMSNorm(h, eps=config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_parameters,
                                      config.max_position_embeddings)  # frequencies: not a buffer
        self.build_extra_modules()
        self._init_trainable()
        self.to(device=embed_weight.device, dtype=embed_weight.dtype)
        # Frozen target weights, shared with the engine (no copy); set after .to() so they stay shared.
        self.embed_tokens = nn.Embedding(v, h, _weight=embed_weight.detach(), _freeze=True)
        self.lm_head = nn.Linear(h, v, bias=False, device="meta")
        self.lm_head.weight = nn.Parameter(lm_head_weight.detach(), requires_grad=False)

    def build_extra_modules(self) -> None:
        """Extension point: add a subclass's modules (Domino's correction head); they are created
        before initialisation, so ``init_module`` sees them in registration order."""

    def init_module(self, module: nn.Module) -> None:
        """Extension point: initialise one trainable module; DFlash draws Linear weights from
        N(0, 0.02). A subclass handles its own module types and defers the rest here."""
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, INIT_STD)

    @torch.no_grad()
    def _init_trainable(self) -> None:
        for module in self.modules():
            self.init_module(module)

    # ------------------------------------------------------------------ forward

    def hidden(self, hidden_states: torch.Tensor, block_ids: torch.Tensor, anchors: torch.Tensor,
               keep: torch.Tensor, first_slot: int = 0) -> torch.Tensor:
        """Draft output (after the final norm) for block slots >= ``first_slot``: [B, N·(bs - first_slot), H].

        Earlier slots still feed every layer's keys and values; only the last layer's queries,
        MLP and norm skip them (DFlash never supervises slot 0, the anchor token itself).
        """
        cfg = self.config
        B, S, width = hidden_states.shape
        if width != cfg.context_width:
            raise ValueError(
                f"context features are {width} wide but this draft reads {len(cfg.target_layer_ids)} target "
                f"layers {list(cfg.target_layer_ids)} of {cfg.hidden_size} = {cfg.context_width}; capture "
                "the features with the same strategy.target_layer_ids as the draft")
        dtype = self.fc.weight.dtype
        ctx = self.hidden_norm(self.fc(hidden_states.to(dtype)))  # [B, S, H]
        x = self.embed_tokens(block_ids).to(dtype)  # [B, N·bs, H]
        context_pos = torch.arange(S, device=x.device).expand(B, S)
        positions = torch.cat([context_pos, block_positions(anchors, cfg.block_size)], 1)  # [B, S + N·bs]
        rope = Rope(*self.rotary(positions, dtype), S, cfg.block_size)
        windows = {t: cfg.window_of(t) for t in dict.fromkeys(cfg.layer_types)}
        plan = plan_attention(anchors, keep, S, cfg.block_size, windows, self.attention_backend)
        for i, layer in enumerate(self.layers):
            x = layer(x, ctx, rope, plan, first_slot if i == len(self.layers) - 1 else 0)
        return self.norm(x)

    def forward(self, hidden_states: torch.Tensor, block_ids: torch.Tensor, anchors: torch.Tensor,
                keep: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Blocks ``block_ids`` [B, N·bs] at ``anchors`` [B, N] over context ``hidden_states`` [B, S, K·H].

        Without ``labels``: ``{"logits": [B, N, bs, V]}``. With ``labels`` [B, N, bs]:
        ``{"ce", "correct"}`` per slot, computed in chunks (logits never exist for all blocks).
        Slot 0 is never supervised, so it is not computed: its ce is 0 and correct False.
        """
        B, N = anchors.shape
        bs = self.config.block_size
        if labels is None:
            h = self.hidden(hidden_states, block_ids, anchors, keep).view(B, N, bs, -1)
            return {"logits": self.lm_head(h)}
        h = self.hidden(hidden_states, block_ids, anchors, keep, first_slot=1).view(B, N, bs - 1, -1)
        idx, (hk, yk) = kept_blocks((h, labels[:, :, 1:]), keep)  # [M, bs-1, H], [M, bs-1]
        out = frozen_head_ce(hk, self.lm_head.weight, yk, self.loss_chunk_blocks * (bs - 1))
        ce, correct = (F.pad(t, (1, 0)) for t in scatter_blocks(out, idx, keep))  # slot 0: 0 / False
        return {"ce": ce, "correct": correct}

    @torch.no_grad()
    def draft_block(self, hidden_states: torch.Tensor, first_token: int) -> torch.Tensor:
        """Greedy tokens for slots 1..bs-1 of one block after context ``hidden_states`` [S, K·H]."""
        cfg = self.config
        S = hidden_states.shape[0]
        device = self.fc.weight.device
        block = torch.full((1, cfg.block_size), cfg.mask_token_id, dtype=torch.long, device=device)
        block[0, 0] = first_token
        anchors = torch.tensor([[S]], device=device)
        keep = torch.ones(1, 1, dtype=torch.bool, device=device)
        h = self.hidden(hidden_states[None].to(device), block, anchors, keep, first_slot=1)  # [1, bs-1, H]
        return self.lm_head(h[0]).argmax(-1)

    # ------------------------------------------------------------------ export

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every weight but the frozen target ones (what checkpoints and exports keep)."""
        return {k: v for k, v in self.state_dict().items() if k not in FROZEN}
