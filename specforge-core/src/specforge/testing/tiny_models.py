"""Tiny random causal-LM targets (Qwen3, Qwen2, Llama) saved as real Hugging Face directories.

Tests and the engine kit need a target that loads exactly like a downloaded one (config.json,
safetensors, tokenizer with a ChatML chat template) but builds offline in well under a second.
The tokenizer is byte-level with no merges, so every byte is one token and any text round-trips.
torch and transformers are imported only when a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
CHATML_SPECIALS = (END_OF_TEXT, IM_START, IM_END)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ARCHITECTURES = ("qwen3", "qwen2", "llama")


def make_tiny_tokenizer(mask_token: str | None = None) -> Any:
    """A byte-level ``PreTrainedTokenizerFast``: 256 byte tokens, then the ChatML specials.

    Ids: bytes 0..255 (in ByteLevel alphabet order), ``<|endoftext|>`` 256, ``<|im_start|>``
    257, ``<|im_end|>`` 258, then ``mask_token`` (259) when given. EOS is ``<|im_end|>``,
    padding ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [*CHATML_SPECIALS, *([mask_token] if mask_token else [])]
    tok.add_special_tokens(specials)
    extra = {"mask_token": mask_token} if mask_token else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=IM_END, pad_token=END_OF_TEXT, chat_template=CHATML_TEMPLATE,
        **extra,
    )


def tiny_config(
    arch: str = "qwen3",
    *,
    num_layers: int = 4,
    hidden: int = 64,
    vocab: int = 272,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    max_positions: int = 512,
    tie_embeddings: bool = False,
    initializer_range: float = 0.02,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Any:
    """A transformers config for a tiny model of ``arch`` (one of ``ARCHITECTURES``)."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    classes = {"qwen3": Qwen3Config, "qwen2": Qwen2Config, "llama": LlamaConfig}
    if arch not in classes:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if hidden % heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
    kwargs: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate or 2 * hidden,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": max_positions,
        "tie_word_embeddings": tie_embeddings,
        "initializer_range": initializer_range,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "bos_token_id": None,
    }
    if arch in ("qwen3", "llama"):
        kwargs["head_dim"] = hidden // heads
    return classes[arch](**kwargs)


def make_tiny_target(
    path: str | Path,
    arch: str = "qwen3",
    *,
    num_layers: int = 4,
    hidden: int = 64,
    vocab: int | None = None,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int | None = None,
    max_positions: int = 512,
    tie_embeddings: bool = False,
    initializer_range: float = 0.02,
    mask_token: str | None = None,
    seed: int = 0,
) -> Path:
    """Build a random tiny target with its tokenizer and save both into ``path``; return it.

    ``vocab`` defaults to the tokenizer size rounded up to a multiple of 16 (embedding rows
    beyond the tokenizer, like Qwen's padded vocabularies). Weights are float32, seeded.
    """
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = make_tiny_tokenizer(mask_token)
    n_tokens = len(tokenizer)
    vocab = vocab if vocab is not None else -(-n_tokens // 16) * 16
    if vocab < n_tokens:
        raise ValueError(f"vocab {vocab} is smaller than the tokenizer's {n_tokens} tokens")
    config = tiny_config(
        arch, num_layers=num_layers, hidden=hidden, vocab=vocab, heads=heads, kv_heads=kv_heads,
        intermediate=intermediate, max_positions=max_positions, tie_embeddings=tie_embeddings,
        initializer_range=initializer_range, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).float()
    finally:
        torch.random.set_rng_state(generator_state)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_plan_only_target(path: str | Path, config: dict[str, Any], specials: dict[int, str] | None = None,
                           eos: str | None = None, pad: str | None = None) -> Path:
    """A model directory ``run --plan`` accepts without any weights to load: ``config`` as config.json,
    a model.safetensors whose header names the embedding and lm_head (no data: --plan reads headers
    only) and a tokenizer_config.json with ``specials`` (id -> token) and the eos/pad roles.

    For plan tests of real-sized targets (a Qwen3-8B config) on a machine that has no such model.
    """
    import json
    import struct

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    v, h = config["vocab_size"], config["hidden_size"]
    size = v * h * 2
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [v, h], "data_offsets": [0, size]},
                         "lm_head.weight": {"dtype": "BF16", "shape": [v, h], "data_offsets": [size, 2 * size]}})
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())
    tokenizer_config: dict[str, Any] = {"added_tokens_decoder": {
        str(i): {"content": t, "special": True} for i, t in (specials or {}).items()}}
    tokenizer_config.update({k: v for k, v in (("eos_token", eos), ("pad_token", pad)) if v})
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return path
