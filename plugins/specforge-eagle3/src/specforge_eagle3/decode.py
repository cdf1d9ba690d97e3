"""Chain drafting with an EAGLE3 draft, the way SGLang's EAGLE worker runs it (top-1 chain).

With accepted tokens x_0..x_n (x_n: the target's newest token) and target features a_0..a_{n-1},
step 0 runs the draft over positions 0..n-1 (position t embeds x_{t+1} and fuses a_t); the
output at n-1 gives the first draft token. Each further step feeds the previous step's output
hidden (before the final norm) and the token just drafted, at the next RoPE position, attending
to the step-0 keys and to every earlier step's key at that position. Draft ids map to target
ids through ``d2t``. Everything is recomputed per call: the evaluation loop passes all features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from specforge_eagle3.attention import TTTCache
from specforge_eagle3.model import Eagle3Draft


@dataclass
class DecodeState:
    """Per-prompt state; drafting recomputes from the features, so only the prompt length is kept."""

    prompt_len: int


def begin_decode(draft: Eagle3Draft, prompt_ids: Sequence[int], features: Mapping[str, Any]) -> DecodeState:
    return DecodeState(prompt_len=len(prompt_ids))


@torch.no_grad()
def propose(draft: Eagle3Draft, accepted_ids: Sequence[int], features: Mapping[str, Any], k: int) -> list[int]:
    """k target-vocabulary ids continuing ``accepted_ids`` (none when there is no feature yet)."""
    return draft_chain(draft, accepted_ids, features, k)[0]


@torch.no_grad()
def draft_chain(draft: Eagle3Draft, accepted_ids: Sequence[int], features: Mapping[str, Any],
                k: int) -> tuple[list[int], list[torch.Tensor]]:
    """The drafted target ids and each step's draft-vocab logits [Vd]."""
    n = len(accepted_ids) - 1  # positions with target features
    if k < 1 or n < 1:
        return [], []
    aux = torch.as_tensor(features["hidden_states"])
    if aux.shape[0] < n:
        raise ValueError(f"features cover {aux.shape[0]} positions but {n} accepted tokens precede the "
                         f"newest one; the engine must capture features for accepted_ids[:-1]")
    device = draft.fc.weight.device
    aux = aux[:n].to(device)[None]  # [1, n, 3*Ht]
    ids = torch.tensor([list(accepted_ids[1:])], dtype=torch.int64, device=device)  # [1, n]
    positions = torch.arange(n, device=device)[None]  # [1, n]
    cache = TTTCache()
    out, logits = draft.step(ids, draft.fuse(aux), positions, cache)  # causal over the n positions
    hidden, step_logits = out[:, -1:], logits[0, -1]  # [1, 1, H], [Vd]
    drafted, all_logits = [], []
    for j in range(k):
        all_logits.append(step_logits)
        token = draft.to_target_ids(step_logits.argmax())
        drafted.append(int(token))
        if j + 1 < k:
            position = torch.full((1, 1), n - 1 + j + 1, device=device)
            hidden, logits = draft.step(token.view(1, 1), hidden, position, cache)  # the last row
            step_logits = logits[0, -1]
    return drafted, all_logits
