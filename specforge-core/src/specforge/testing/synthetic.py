"""A synthetic tiny target for conformance kits: TargetInfo, per-sample features and DataStats.

No model is run. The "text" follows a fixed rule (each token is a function of the two before
it), and every feature at position t is a deterministic function of tokens t and t-1, so any
draft that reads them can learn the continuation and its loss falls within a few dozen steps.
The target's logits put most mass (~0.8) on the rule's next token, like a trained model's, so
soft-label losses have a low floor too.
The same functions give features for any id sequence, so decoding checks can feed a strategy
the features of ``accepted_ids[:-1]`` exactly as an engine would.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from specforge.contracts import DataStats, FeatureRequest, SampleFeatures, SpecialTokens, TargetInfo

SYNTHETIC_MODEL_PATH = "synthetic:tiny-qwen3"
DEFAULT_LENGTHS = (16, 11, 20, 9)
PROMPT_TOKENS = 3  # leading tokens of each sample with loss_mask 0 (the "prompt")


def tiny_target_info(
    *,
    hidden_size: int = 64,
    num_layers: int = 8,
    vocab_size: int = 128,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    rope_theta: float = 10000.0,
    seed: int = 0,
    dtype: str = "float32",
    with_weights: bool = True,
) -> TargetInfo:
    """A Qwen3-shaped target with random frozen embedding and lm_head; the last id is the mask token.

    ``with_weights=False`` gives the torch-free view `specforge run --plan` has (no tensors).
    """
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by {num_attention_heads} heads")
    head_dim = hidden_size // num_attention_heads
    mask_token_id = vocab_size - 1
    config: dict[str, Any] = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "vocab_size": vocab_size,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate_size,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "max_position_embeddings": 256,
        "attention_bias": False,
        "tie_word_embeddings": False,
        "dtype": dtype,
        "mask_token_id": mask_token_id,
    }
    embed = lm_head = None
    if with_weights:
        gen = torch.Generator().manual_seed(seed)
        torch_dtype = getattr(torch, dtype)
        # Unit-scale rows: logits of a unit-RMS hidden state have std ~1, like a trained model's.
        embed = (torch.randn(vocab_size, hidden_size, generator=gen) / hidden_size**0.5).to(torch_dtype)
        lm_head = (torch.randn(vocab_size, hidden_size, generator=gen) / hidden_size**0.5).to(torch_dtype)
    return TargetInfo(
        model_path=SYNTHETIC_MODEL_PATH,
        model_type="qwen3",
        num_layers=num_layers,
        hidden_size=hidden_size,
        vocab_size=vocab_size,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=head_dim,
        intermediate_size=intermediate_size,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        config=config,
        hidden_act="silu",
        special_tokens=SpecialTokens(mask=mask_token_id, tokenizer_size=vocab_size),
        embed_weight=embed,
        lm_head_weight=lm_head,
    )


def text_vocab(info: TargetInfo) -> int:
    """Ids ``0..text_vocab-1`` appear in synthetic text; the mask token never does."""
    return info.vocab_size - 1 if info.mask_token_id == info.vocab_size - 1 else info.vocab_size


def next_token(prev2: int, prev1: int, vocab: int) -> int:
    """The synthetic language's rule: a token is fixed by the two before it."""
    return (3 * prev1 + 5 * prev2 + 7) % vocab


def continue_ids(ids: Sequence[int], n: int, info: TargetInfo) -> list[int]:
    """The next ``n`` tokens of ``ids`` under the rule (what this target "generates")."""
    if len(ids) < 2:
        raise ValueError("continue_ids needs at least two tokens of context")
    vocab = text_vocab(info)
    out = list(ids)
    for _ in range(n):
        out.append(next_token(out[-2], out[-1], vocab))
    return out[len(ids):]


def synthetic_ids(length: int, info: TargetInfo, *, seed: int) -> list[int]:
    """A sample of the synthetic language: two random start tokens, then the rule."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(0, text_vocab(info), (2,), generator=gen).tolist()
    return (start + continue_ids(start, length - 2, info))[:length]


def _projection(info: TargetInfo, tag: int) -> Any:
    """A fixed random [H, H] matrix per tag (layer id, or -1 for the final hidden state)."""
    gen = torch.Generator().manual_seed(7919 * (tag + 2) + info.hidden_size)
    return torch.randn(info.hidden_size, info.hidden_size, generator=gen) / info.hidden_size**0.5


def _token_vectors(info: TargetInfo, ids: Any) -> Any:
    """Embedding rows of ``ids`` and of the previous tokens (zeros before the first): two [S, H]."""
    embed = info.embed_weight.float() * info.hidden_size**0.5  # unit-RMS rows
    cur = embed[ids]  # [S, H]
    prev = torch.cat([torch.zeros_like(cur[:1]), cur[:-1]])  # [S, H]
    return cur, prev


def _rms_norm(x: Any) -> Any:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def synthetic_features(info: TargetInfo, request: FeatureRequest, input_ids: Sequence[int],
                       loss_mask: Sequence[int] | None = None, *, logits: bool = False) -> SampleFeatures:
    """The features a target engine would capture for ``input_ids``, unbatched and unpadded.

    ``logits=True`` adds ``"logits"`` even if the request does not ask for it (decoding does).
    """
    if info.embed_weight is None or info.lm_head_weight is None:
        raise ValueError("synthetic features need a TargetInfo with weights (tiny_target_info())")
    request.check_layers(info.num_layers)
    dtype = info.lm_head_weight.dtype
    ids = torch.tensor(list(input_ids), dtype=torch.long)  # [S]
    mask = torch.tensor(list(loss_mask) if loss_mask is not None else [1] * len(ids), dtype=torch.long)
    if len(mask) != len(ids):
        raise ValueError(f"{len(ids)} input ids but {len(mask)} loss-mask entries")
    cur, prev = _token_vectors(info, ids)
    out: SampleFeatures = {"input_ids": ids, "loss_mask": mask}
    if request.layers:
        layers = [torch.tanh(cur @ _projection(info, i) + prev @ _projection(info, i + 100))
                  for i in request.layers]  # each [S, H]
        out["hidden_states"] = torch.cat(layers, dim=-1).to(dtype)  # [S, K*H]
    # The target is confident and mostly right: its last hidden state points at the lm_head row
    # of the rule's next token (a teacher with low entropy, like a trained model), plus context.
    vocab = text_vocab(info)
    nxt = [next_token(a, b, vocab) for a, b in zip([0, *ids.tolist()[:-1]], ids.tolist())]
    head = info.lm_head_weight.float()[torch.tensor(nxt, dtype=torch.long)]  # [S, H]
    toward_next = head / head.norm(dim=-1, keepdim=True) * info.hidden_size**0.5  # [S, H], RMS 1
    last = _rms_norm(toward_next + 0.5 * _rms_norm(cur + 0.5 * prev @ _projection(info, -1)))  # [S, H]
    if request.last_hidden:
        out["last_hidden"] = last.to(dtype)
    if request.logits or logits:
        out["logits"] = (last @ info.lm_head_weight.float().T).to(dtype)  # [S, V]
    return out


def synthetic_loss_mask(length: int) -> list[int]:
    """A prompt of ``PROMPT_TOKENS`` unsupervised tokens, then a supervised reply."""
    prompt = min(PROMPT_TOKENS, max(length - 2, 0))
    return [0] * prompt + [1] * (length - prompt)


def synthetic_samples(info: TargetInfo, request: FeatureRequest, *,
                      lengths: Sequence[int] = DEFAULT_LENGTHS, seed: int = 0) -> list[SampleFeatures]:
    """Samples of different lengths (so collate must pad), each with ≥ 2 consecutive supervised tokens."""
    samples = []
    for i, length in enumerate(lengths):
        if length < 4:
            raise ValueError(f"sample length {length} is too short; use at least 4 tokens")
        ids = synthetic_ids(length, info, seed=seed * 1000 + i)
        samples.append(synthetic_features(info, request, ids, synthetic_loss_mask(length)))
    return samples


def synthetic_stats(samples: Sequence[SampleFeatures]) -> DataStats:
    """DataStats of ``samples`` as the data pipeline would compute them."""
    counts: Counter[int] = Counter()
    digest = hashlib.sha256()
    num_tokens = 0
    for s in samples:
        ids = s["input_ids"].tolist()
        mask = s["loss_mask"].tolist()
        num_tokens += len(ids)
        counts.update(t for t, m in zip(ids, mask) if m)
        digest.update(repr((ids, mask)).encode())
    return DataStats(
        num_samples=len(samples),
        num_tokens=num_tokens,
        num_loss_tokens=sum(counts.values()),
        corpus_hash=digest.hexdigest()[:16],
        loss_token_counts=dict(counts),
    )
