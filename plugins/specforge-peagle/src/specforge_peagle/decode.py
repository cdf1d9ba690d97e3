"""Greedy parallel drafting: all k tokens from ONE draft forward (P-EAGLE's point).

With accepted tokens x_0..x_n (x_n: the target's newest token) and target features a_0..a_{n-1},
the forward scores positions 0..n-1 at depth 0 (position t embeds x_{t+1} and fuses a_t) and the
chain of anchor n-1 at depths 1..k-1 (mask token, ``mask_hidden``). Depth d's argmax is the
(d+1)-th drafted token, mapped to the target vocabulary through ``d2t``. The same element
forward is what training scores, so drafting proposes the training-time argmax. At most
``num_depths`` tokens: deeper depths were never trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from specforge_peagle.elements import drafting_elements
from specforge_peagle.model import PeagleDraft


@dataclass
class DecodeState:
    """Per-prompt state; drafting recomputes from the features, so only the prompt length is kept."""

    prompt_len: int


@torch.no_grad()
def draft_parallel(draft: PeagleDraft, accepted_ids: Sequence[int], features: Mapping[str, Any],
                   k: int) -> tuple[list[int], torch.Tensor]:
    """(up to k target-vocab ids continuing ``accepted_ids``, their draft-vocab logits [k', Vd])."""
    n = len(accepted_ids) - 1  # positions with target features
    k = min(k, draft.config.num_depths)
    if k < 1 or n < 1:
        return [], torch.empty(0)
    aux = torch.as_tensor(features["hidden_states"])
    if aux.shape[0] < n:
        raise ValueError(f"features cover {aux.shape[0]} positions but {n} accepted tokens precede the "
                         f"newest one; the engine must capture features for accepted_ids[:-1]")
    device = draft.fc.weight.device
    next_tokens = torch.tensor([list(accepted_ids[1:])], dtype=torch.int64, device=device)  # [1, n]
    anchors, depths, documents = drafting_elements(n, k, device)
    logits = draft.element_logits(next_tokens, aux[:n].to(device)[None], anchors, depths, documents)[0]
    chain = logits[n - 1:]  # [k, Vd]: the anchor's depth 0, then its depths 1..k-1
    return draft.to_target_ids(chain.argmax(-1)).tolist(), chain
