"""Held-out task accuracy of the demo target: exact match of its greedy answer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from specforge.demo.target import prompt_ids
from specforge.demo.tasks import Conversation


@dataclass(frozen=True)
class Accuracy:
    """Overall and per-task fraction of prompts answered exactly."""

    overall: float
    per_task: dict[str, float] = field(default_factory=dict)
    count: int = 0


def greedy_answers(model: Any, tokenizer: Any, users: Sequence[str], max_new_tokens: int,
                   batch_size: int = 64) -> list[str]:
    """Greedy replies (special tokens dropped, stripped), batched with left padding."""
    import torch

    pad = tokenizer.pad_token_id
    answers: list[str] = []
    for start in range(0, len(users), batch_size):
        prompts = [prompt_ids(tokenizer, u) for u in users[start:start + batch_size]]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # [B, S]
        mask = torch.zeros((len(prompts), width), dtype=torch.long)  # [B, S]
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=pad)
        for row in out[:, width:]:
            answers.append(tokenizer.decode(row.tolist(), skip_special_tokens=True).strip())
    return answers


def measure_accuracy(model: Any, tokenizer: Any, conversations: Sequence[Conversation],
                     max_new_tokens: int = 48) -> Accuracy:
    """Fraction of conversations whose greedy answer equals the reference answer exactly."""
    got = greedy_answers(model, tokenizer, [c.user for c in conversations], max_new_tokens)
    hits: dict[str, list[bool]] = defaultdict(list)
    for conv, answer in zip(conversations, got):
        hits[conv.task].append(answer == conv.assistant)
    flat = [h for v in hits.values() for h in v]
    return Accuracy(overall=sum(flat) / max(1, len(flat)),
                    per_task={t: sum(v) / len(v) for t, v in sorted(hits.items())}, count=len(flat))
