"""Tiny EAGLE3 setups built directly from the contracts: a TargetInfo with random frozen weights,
corpus statistics and per-sample features (no engine, no other helper module).

Imported by the tests as ``eagle3_tiny`` (pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from specforge.contracts import DataStats, TargetInfo
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy


def make_info(*, hidden: int = 32, layers: int = 8, vocab: int = 40, heads: int = 4, kv_heads: int = 2,
              intermediate: int = 48, head_scale: float = 1.0, rope: Mapping[str, Any] | None = None,
              seed: int = 0, with_weights: bool = True) -> TargetInfo:
    """A Qwen3-shaped target; ``head_scale`` sharpens the teacher (logit std ~ head_scale)."""
    config: dict[str, Any] = {
        "model_type": "qwen3", "hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": hidden // heads,
        "intermediate_size": intermediate, "hidden_act": "silu", "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2,
    }
    config.update(rope or {})
    embed = head = None
    if with_weights:
        gen = torch.Generator().manual_seed(seed)
        embed = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64)
        head = torch.randn(vocab, hidden, generator=gen, dtype=torch.float64) * head_scale / hidden**0.5
    return TargetInfo(model_path="test:tiny", model_type="qwen3", num_layers=layers, hidden_size=hidden,
                      vocab_size=vocab, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      head_dim=hidden // heads, intermediate_size=intermediate, rms_norm_eps=1e-6,
                      max_position_embeddings=256, config=config, embed_weight=embed, lm_head_weight=head)


def make_stats(counts: Mapping[int, int], corpus_hash: str = "corpus-a") -> DataStats:
    total = sum(counts.values())
    return DataStats(num_samples=1, num_tokens=total, num_loss_tokens=total, corpus_hash=corpus_hash,
                     loss_token_counts=dict(counts))


def make_samples(info: TargetInfo, lengths: Sequence[int], *, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> list[dict[str, torch.Tensor]]:
    """Random features: token ids, a prompt of 2 unsupervised tokens, 3 aux layers, a final hidden."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for length in lengths:
        last = torch.randn(length, info.hidden_size, generator=gen, dtype=torch.float64)
        samples.append({
            "input_ids": torch.randint(0, info.vocab_size, (length,), generator=gen),
            "loss_mask": torch.tensor([0, 0] + [1] * (length - 2)),
            "hidden_states": torch.randn(length, 3 * info.hidden_size, generator=gen,
                                         dtype=torch.float64).to(dtype),
            "last_hidden": (last / last.pow(2).mean(-1, keepdim=True).sqrt()).to(dtype),
        })
    return samples


def counts_of(samples: Sequence[Mapping[str, torch.Tensor]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s in samples:
        for t, m in zip(s["input_ids"].tolist(), s["loss_mask"].tolist()):
            if m:
                counts[t] = counts.get(t, 0) + 1
    return counts


def build(options: Mapping[str, Any] | None = None, counts: Mapping[int, int] | None = None,
          seed: int = 0, **target: Any) -> tuple[Eagle3Strategy, Any, TargetInfo]:
    """(strategy, float64 draft, info) for strategy options and ``make_info`` keyword arguments."""
    info = make_info(**target)
    strategy = Eagle3Strategy(Eagle3Options(**dict(options or {})))
    torch.manual_seed(seed)
    stats = make_stats(counts if counts is not None else {t: 1 + t % 5 for t in range(info.vocab_size)})
    draft = strategy.build_draft(info, stats).double()
    return strategy, draft, info
