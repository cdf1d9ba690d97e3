"""Tiny float64 P-EAGLE setups built from the public API: a TargetInfo with random frozen weights,
corpus statistics and per-sample features (no engine). Imported by the tests as ``peagle_tiny``
(pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from specforge_peagle.options import PeagleOptions
from specforge_peagle.strategy import PeagleStrategy

from specforge.api import DataStats, SpecialTokens, TargetInfo

MASK = 39  # the tiny target's mask token (its last row)


def make_info(*, hidden: int = 16, vocab: int = 40, heads: int = 4, kv_heads: int = 2, intermediate: int = 24,
              layers: int = 8, head_scale: float = 3.0, seed: int = 0, mask: int | None = MASK,
              tokenizer_size: int | None = None) -> TargetInfo:
    """A Qwen3-shaped target in float64; ``head_scale`` sharpens the teacher (logit std ~ head_scale)."""
    config: dict[str, Any] = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": hidden,
        "num_hidden_layers": layers, "vocab_size": vocab, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hidden // heads, "intermediate_size": intermediate,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "bos_token_id": 1, "eos_token_id": 2,
    }
    gen = torch.Generator().manual_seed(seed)
    embed = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64)
    head = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64) * head_scale / hidden**0.5
    return TargetInfo(model_path="test:tiny-peagle", model_type="qwen3", num_layers=layers, hidden_size=hidden,
                      vocab_size=vocab, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=hidden // heads, intermediate_size=intermediate, rms_norm_eps=1e-6,
                      max_position_embeddings=256, hidden_act="silu", config=config,
                      special_tokens=SpecialTokens(mask=mask, pad=0, eos=2, tokenizer_size=tokenizer_size),
                      embed_weight=embed, lm_head_weight=head)


def make_samples(info: TargetInfo, lengths: Sequence[int], *, seed: int = 0,
                 prompt: int = 2) -> list[dict[str, torch.Tensor]]:
    """Random features: ids below the mask token, ``prompt`` unsupervised tokens, 3 aux layers, a final hidden."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for length in lengths:
        last = torch.randn(length, info.hidden_size, generator=gen, dtype=torch.float64)
        samples.append({
            "input_ids": torch.randint(0, info.vocab_size - 1, (length,), generator=gen),
            "loss_mask": torch.tensor([0] * prompt + [1] * (length - prompt)),
            "hidden_states": torch.randn(length, 3 * info.hidden_size, generator=gen, dtype=torch.float64),
            "last_hidden": last / last.pow(2).mean(-1, keepdim=True).sqrt(),
        })
    return samples


def make_stats(samples: Sequence[Mapping[str, torch.Tensor]]) -> DataStats:
    counts: dict[int, int] = {}
    for s in samples:
        for t, m in zip(s["input_ids"].tolist(), s["loss_mask"].tolist()):
            if m:
                counts[t] = counts.get(t, 0) + 1
    total = sum(counts.values())
    return DataStats(num_samples=len(samples), num_tokens=total, num_loss_tokens=total, corpus_hash="tiny",
                     loss_token_counts=counts)


def build(options: Mapping[str, Any] | None = None, *, lengths: Sequence[int] = (9, 6), seed: int = 0,
          randomise: bool = True, **target: Any) -> tuple[PeagleStrategy, Any, TargetInfo, list[dict]]:
    """(strategy, float64 draft, info, samples); ``randomise`` moves every trainable weight (norms and
    mask_hidden included) far from its init, so a wrong wiring cannot hide behind ones and zeros."""
    info = make_info(**target)
    strategy = PeagleStrategy(PeagleOptions(**dict(options or {})))
    samples = make_samples(info, lengths, seed=seed + 1)
    torch.manual_seed(seed)
    draft = strategy.build_draft(info, make_stats(samples)).double()
    if randomise:
        gen = torch.Generator().manual_seed(seed + 2)
        with torch.no_grad():
            for name, p in draft.named_parameters():
                if p.requires_grad:
                    base = 1.0 if name.endswith(("norm.weight", "layernorm.weight")) else 0.0
                    p.copy_(base + torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.4)
    return strategy, draft, info, samples
