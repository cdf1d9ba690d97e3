"""Speculative decoding with a DFlash-family draft: one forward drafts a whole block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from specforge.api import unwrap


@dataclass
class DecodeState:
    """Per-prompt state; the context is re-projected each round (no KV cache yet)."""

    prompt_len: int
    rounds: int = 0


def propose_block(draft: Any, state: DecodeState, accepted_ids: Sequence[int], features: dict,
                  k: int) -> list[int]:
    """Draft up to ``k`` of the tokens the model's ``draft_block`` gives (DFlash: bs-1) after
    ``accepted_ids[-1]``, from features of ``accepted_ids[:-1]``."""
    model = unwrap(draft)
    if not accepted_ids:
        raise ValueError("propose needs at least the target's first token in accepted_ids")
    if "hidden_states" not in features:
        raise ValueError("propose needs the target's 'hidden_states' feature for accepted_ids[:-1]; capture "
                         "it with this strategy's feature request")
    context = torch.as_tensor(features["hidden_states"])
    context = context[0] if context.dim() == 3 else context  # [S, K·H]
    needed = len(accepted_ids) - 1
    if context.shape[0] < needed:
        raise ValueError(f"features cover {context.shape[0]} tokens but accepted_ids[:-1] has {needed}; "
                         "the engine must capture every verified token")
    tokens = model.draft_block(context[:needed], int(accepted_ids[-1]))  # [bs-1]
    state.rounds += 1
    return tokens[: max(k, 0)].tolist()
