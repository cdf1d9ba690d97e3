"""Every knob of the demo build in one place (no torch): sizes, seeds, the target's shape.

Changing anything here changes the built assets, so bump ``DEMO_VERSION`` with it: the cache
directory is named after it and an old build is never reused for a new recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

DEMO_VERSION = "v1"
SEED = 1234

# Data: unique prompts per task (train), and per task in the held-out split.
# Arithmetic facts must be memorised (the slowest task to learn), so it gets the largest share.
TRAIN_PER_TASK = {"arithmetic": 1000, "greeting": 400, "copy": 800, "reverse": 1000, "sort": 1000}
HELDOUT_PER_TASK = 50

# Specials come first in the vocabulary, in this order, so their ids are fixed (0, 1, 2, 3).
SPECIAL_TOKENS = {"pad": "<|endoftext|>", "im_start": "<|im_start|>", "eos": "<|im_end|>", "mask": "<|mask|>"}
DEMO_VOCAB_SIZE = 512
DEMO_MAX_LENGTH = 512


@dataclass(frozen=True)
class TargetShape:
    """The tiny Qwen3 target's architecture (``Qwen3Config`` fields)."""

    num_hidden_layers: int = 8
    hidden_size: int = 96
    intermediate_size: int = 256
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 24
    vocab_size: int = DEMO_VOCAB_SIZE
    max_position_embeddings: int = DEMO_MAX_LENGTH
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False


@dataclass(frozen=True)
class TrainRecipe:
    """How the target is trained: AdamW, warmup then cosine decay, conversations packed into rows."""

    steps: int = 1000
    batch_size: int = 32  # conversations per step
    pack_length: int = 160  # tokens per packed row (conversations are 29-64 tokens)
    lr: float = 4e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    extra_rounds: int = 3  # more low-lr rounds if accuracy falls short, before giving up
    extra_steps: int = 300
    min_accuracy: float = 0.8
    threads: int = 2  # at most; fewer when the process has fewer (torch.get_num_threads())
    eval_max_new_tokens: int = 48


TARGET_SHAPE = TargetShape()
TRAIN_RECIPE = TrainRecipe()
