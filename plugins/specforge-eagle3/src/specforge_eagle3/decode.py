"""Drafting with an EAGLE3 draft the way SGLang's EAGLE worker runs it: a top-1 chain, or SGLang's top-k tree.

With accepted tokens x_0..x_n (x_n: the target's newest token) and target features a_0..a_{n-1},
step 0 runs the draft over positions 0..n-1 (position t embeds x_{t+1} and fuses a_t); the
output at n-1 gives the first draft token. Each further step feeds the previous step's output
hidden (before the final norm) and the token just drafted, at the next RoPE position, attending
to the step-0 keys and to every earlier step's key on its own path. Draft ids map to target ids
through ``d2t``.

The draft's KV cache: step 0's key and value at position t depend only on x_{t+1} and a_t, which
never change once accepted, so a ``DecodeState`` keeps them across rounds and step 0 then runs
only the positions accepted since the previous round (their queries see the kept keys and,
causally, each other). Without a state (``None``), or with ``strategy.draft_kv_cache = false``,
step 0 re-runs the whole prefix every round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from specforge.api import DraftTree, TreeShape, UserError, topk_tree
from specforge_eagle3.attention import TTTCache
from specforge_eagle3.model import Eagle3Draft


@dataclass
class DecodeState:
    """Per prompt: the draft's step-0 keys/values of the positions drafted from so far."""

    prompt_len: int
    use_cache: bool = True
    ids: list[int] = field(default_factory=list)  # x_1..x_m: the tokens the kept keys embed
    keys: tuple[torch.Tensor, torch.Tensor] | None = None  # [1, Hkv, m, D] each
    tail: tuple[torch.Tensor, torch.Tensor] | None = None  # step 0's output at m-1: hidden [1, 1, H], logits [Vd]


def begin_decode(draft: Eagle3Draft, prompt_ids: Sequence[int], features: Mapping[str, Any],
                 use_cache: bool = True) -> DecodeState:
    return DecodeState(prompt_len=len(prompt_ids), use_cache=use_cache)


def _kept(state: DecodeState | None, accepted_ids: Sequence[int]) -> int:
    """Positions whose kept step-0 keys still hold: all of them while ``accepted_ids`` extends the
    tokens they embed, else none."""
    if state is None or not state.use_cache or state.keys is None:
        return 0
    m = len(state.ids)
    if m > len(accepted_ids) - 1 or list(accepted_ids[1:m + 1]) != state.ids:
        return 0
    return m


def _step0(draft: Eagle3Draft, state: DecodeState | None, accepted_ids: Sequence[int],
           features: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, TTTCache] | None:
    """Step 0 at the newest position: (hidden [1, 1, H], logits [Vd], the cache holding every
    step-0 key), reusing the state's keys; None when there is no feature yet."""
    n = len(accepted_ids) - 1  # positions with target features
    if n < 1:
        return None
    aux = torch.as_tensor(features["hidden_states"])
    if aux.shape[0] < n:
        raise ValueError(f"features cover {aux.shape[0]} positions but {n} accepted tokens precede the "
                         f"newest one; the engine must capture features for accepted_ids[:-1]")
    m = _kept(state, accepted_ids)
    cache = TTTCache(past=state.keys if m else None)
    if m == n:  # nothing accepted since the last call (asked twice): step 0 is what it was
        assert state is not None and state.keys is not None and state.tail is not None
        cache.k0, cache.v0 = state.keys
        hidden, logits = state.tail
    else:
        device = draft.fc.weight.device
        fused = draft.fuse(aux[m:n].to(device)[None])  # [1, n-m, H]
        ids = torch.tensor([list(accepted_ids[m + 1:n + 1])], dtype=torch.int64, device=device)  # [1, n-m]
        positions = torch.arange(m, n, device=device)[None]  # [1, n-m]
        mask0 = None  # the fused causal path when every position is new
        if m:  # new query i (position m+i) sees keys 0..m+i: the kept ones and the new ones up to itself
            mask0 = (torch.arange(n, device=device)[None] <= positions[0][:, None])[None, None]  # [1, 1, n-m, n]
        out, all_logits = draft.step(ids, fused, positions, cache, mask0)
        hidden, logits = out[:, -1:], all_logits[0, -1]  # [1, 1, H], [Vd]
    if state is not None and state.use_cache:
        state.ids = list(accepted_ids[1:n + 1])
        state.keys = (cache.k0, cache.v0)
        state.tail = (hidden, logits)
    return hidden, logits, cache


@torch.no_grad()
def propose(draft: Eagle3Draft, accepted_ids: Sequence[int], features: Mapping[str, Any], k: int,
            state: DecodeState | None = None) -> list[int]:
    """k target-vocabulary ids continuing ``accepted_ids`` (none when there is no feature yet)."""
    return draft_chain(draft, accepted_ids, features, k, state)[0]


@torch.no_grad()
def draft_chain(draft: Eagle3Draft, accepted_ids: Sequence[int], features: Mapping[str, Any],
                k: int, state: DecodeState | None = None) -> tuple[list[int], list[torch.Tensor]]:
    """The drafted target ids and each step's draft-vocab logits [Vd]."""
    if k < 1:
        return [], []
    root = _step0(draft, state, accepted_ids, features)
    if root is None:
        return [], []
    hidden, step_logits, cache = root
    n = len(accepted_ids) - 1
    device = draft.fc.weight.device
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


@torch.no_grad()
def propose_tree(draft: Eagle3Draft, accepted_ids: Sequence[int], features: Mapping[str, Any],
                 shape: TreeShape, state: DecodeState | None = None) -> DraftTree:
    """SGLang's top-k tree (``specforge.api.topk_tree``) with the draft's next-token distribution.

    Expanding a node runs one draft step for it: its token at position ``n - 1 + depth``, the
    output hidden of its parent's step, attending to every step-0 key and to its ancestors' step
    keys (the chain's diagonal keys, one path per row). Nodes of one depth run as one batch."""
    vocab_d = draft.d2t.numel()
    if shape.topk > vocab_d:
        raise UserError(f"eval.topk {shape.topk} exceeds the draft's vocabulary ({vocab_d} tokens); lower eval.topk")
    root = _step0(draft, state, accepted_ids, features)
    if root is None:
        return DraftTree(tokens=(), parents=())
    hidden0, logits0, cache = root
    n = len(accepted_ids) - 1
    device = draft.fc.weight.device
    target_ids = draft.to_target_ids(torch.arange(vocab_d, device=device))  # [Vd]
    vocab = draft.t2d.numel()
    # per expanded path: its step's output hidden [1, H] and the step keys/values of its path, each [Hkv, 1, D]
    expanded: dict[tuple[int, ...], tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = {
        (): (hidden0[0], [], [])}

    def in_target_vocab(logits: torch.Tensor) -> torch.Tensor:  # [B, Vd] -> [B, V] log-probs
        out = logits.new_full((logits.shape[0], vocab), float("-inf"), dtype=torch.float64)
        out[:, target_ids] = torch.log_softmax(logits.double(), dim=-1)
        return out

    def expand(paths: list[tuple[int, ...]]) -> torch.Tensor:
        if paths == [()]:
            return in_target_vocab(logits0[None])
        parents = [expanded[p[:-1]] for p in paths]
        b, depth = len(paths), len(paths[0])
        step = TTTCache(k0=cache.k0.expand(b, -1, -1, -1).contiguous(),
                        v0=cache.v0.expand(b, -1, -1, -1).contiguous(),
                        extra_k=[torch.stack([q[1][i] for q in parents]) for i in range(depth - 1)],
                        extra_v=[torch.stack([q[2][i] for q in parents]) for i in range(depth - 1)])
        tokens = torch.tensor([[p[-1]] for p in paths], dtype=torch.int64, device=device)  # [B, 1]
        hidden = torch.stack([q[0] for q in parents])  # [B, 1, H]
        position = torch.full((b, 1), n - 1 + depth, device=device)
        out, logits = draft.step(tokens, hidden, position, step)  # [B, 1, H], [B, 1, Vd]
        for row, path in enumerate(paths):
            expanded[path] = (out[row], [t[row] for t in step.extra_k], [t[row] for t in step.extra_v])
        return in_target_vocab(logits[:, -1])

    return topk_tree(expand, shape)
