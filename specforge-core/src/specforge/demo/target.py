"""Train the tiny Qwen3 demo target on the synthetic chats (loss on assistant tokens only).

Seeded and single-process: the same seed, data and thread count give the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from specforge.demo.recipe import SPECIAL_TOKENS, TargetShape, TrainRecipe
from specforge.demo.tasks import Conversation

IGNORE = -100  # label value transformers' loss skips


@dataclass(frozen=True)
class Example:
    """One conversation as ids; ``prompt_len`` tokens are context, the rest is supervised."""

    input_ids: tuple[int, ...]
    prompt_len: int


def prompt_ids(tokenizer: Any, user: str) -> list[int]:
    """The ChatML prompt for one user turn, ending with the assistant header."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode(tokenizer: Any, conversations: Sequence[Conversation]) -> list[Example]:
    """Prompt ids + answer ids; the answer includes ``<|im_end|>\\n`` as the chat template renders it."""
    end = SPECIAL_TOKENS["eos"] + "\n"
    out = []
    for conv in conversations:
        prompt = prompt_ids(tokenizer, conv.user)
        answer = tokenizer(conv.assistant + end, add_special_tokens=False)["input_ids"]
        out.append(Example(tuple(prompt + answer), len(prompt)))
    return out


def build_model(shape: TargetShape, seed: int) -> Any:
    """A freshly initialised Qwen3ForCausalLM of the demo shape (float32)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    ids = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
    config = Qwen3Config(
        vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_position_embeddings,
        rms_norm_eps=shape.rms_norm_eps, tie_word_embeddings=shape.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        pad_token_id=ids["pad"], eos_token_id=ids["eos"], bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = ids["eos"]
    model.generation_config.pad_token_id = ids["pad"]
    model.generation_config.do_sample = False
    return model


class TargetTrainer:
    """AdamW over shuffled packed batches; ``run(n)`` advances n optimizer steps from where it stopped.

    The learning rate warms up linearly, then follows a cosine to 10% at ``recipe.steps``; steps
    past that (the extra rounds) stay at 10%.
    """

    def __init__(self, model: Any, examples: Sequence[Example], recipe: TrainRecipe, seed: int) -> None:
        import torch

        if len(examples) < recipe.batch_size:
            raise ValueError(f"{len(examples)} training examples cannot fill a batch of {recipe.batch_size}")
        self.model, self.examples, self.recipe = model, list(examples), recipe
        self.generator = torch.Generator().manual_seed(seed)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=recipe.lr, betas=(0.9, 0.98), eps=1e-8,
        )
        self.step_count = 0
        self._order: list[int] = []  # example indices left in this epoch

    def lr_at(self, step: int) -> float:
        r = self.recipe
        if step < r.warmup_steps:
            return r.lr * (step + 1) / r.warmup_steps
        progress = min(1.0, (step - r.warmup_steps) / max(1, r.steps - r.warmup_steps))
        return r.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def _next_examples(self) -> list[Example]:
        """The next ``batch_size`` examples of a seeded shuffle (a new shuffle each epoch)."""
        import torch

        size = self.recipe.batch_size
        if len(self._order) < size:
            self._order = torch.randperm(len(self.examples), generator=self.generator).tolist()
        picked, self._order = self._order[:size], self._order[size:]
        return [self.examples[i] for i in picked]

    def _next_batch(self) -> tuple[Any, Any, Any, Any]:
        """A packed batch: ``input_ids``, ``labels``, ``position_ids`` [R, W] and a mask [R, 1, W, W].

        Conversations are packed into rows of up to ``recipe.pack_length`` tokens; the mask is
        block-diagonal causal and positions restart per conversation, so each one is computed
        exactly as if alone, with almost no padding.
        """
        import torch

        rows: list[list[Example]] = []
        for ex in self._next_examples():
            if rows and sum(len(e.input_ids) for e in rows[-1]) + len(ex.input_ids) <= self.recipe.pack_length:
                rows[-1].append(ex)
            else:
                rows.append([ex])
        width = max(sum(len(e.input_ids) for e in row) for row in rows)
        shape = (len(rows), width)
        ids = torch.zeros(shape, dtype=torch.long)  # [R, W]
        labels = torch.full(shape, IGNORE, dtype=torch.long)  # [R, W]
        positions = torch.zeros(shape, dtype=torch.long)  # [R, W]
        doc = torch.full(shape, -1, dtype=torch.long)  # [R, W] conversation index, -1 on padding
        for r, row in enumerate(rows):
            at = 0
            for d, ex in enumerate(row):
                n = len(ex.input_ids)
                ids[r, at:at + n] = torch.tensor(ex.input_ids)
                labels[r, at + ex.prompt_len:at + n] = ids[r, at + ex.prompt_len:at + n]
                positions[r, at:at + n] = torch.arange(n)
                doc[r, at:at + n] = d
                at += n
        causal = torch.ones(width, width, dtype=torch.bool).tril()  # [W, W]
        allowed = (doc[:, :, None] == doc[:, None, :]) & causal  # [R, W, W]
        allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no empty softmax row
        mask = torch.zeros((len(rows), 1, width, width)).masked_fill(~allowed[:, None], torch.finfo().min)
        return ids, labels, positions, mask

    def run(self, steps: int, progress: Any = None) -> float:
        """Train ``steps`` more optimizer steps; returns the mean loss over them."""
        import torch

        self.model.train()
        total = 0.0
        for _ in range(steps):
            ids, labels, positions, mask = self._next_batch()
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step_count)
            # The loss is the mean over supervised tokens of the batch.
            loss = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels).loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.max_grad_norm)
            self.optimizer.step()
            self.step_count += 1
            total += loss.item()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
        self.model.eval()
        return total / max(1, steps)
