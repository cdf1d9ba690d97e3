"""What the draft is trained toward: the shifted target distribution over the draft vocabulary.

Position t of the batch feeds the draft token x_{t+1} and feature a_t, and is trained toward
the target's distribution given h_{t+1} (its prediction of x_{t+2}). The last real position of
each sample has no h_{t+1}, so its loss mask is cleared (as offline EAGLE3 training does). TTT
step k reads every teacher tensor at t+k: they are padded with ``ttt_length`` positions.

The full-vocabulary logits are never materialised for the whole sequence: they are computed in
chunks of positions (at most ``CHUNK_ELEMENTS`` logits at once), each chunk reduced at once to
its argmax and its softmax over the draft vocabulary (the "compact teacher": [S, Vd], not [S, V]).
This is the only teacher, offline and online alike. The LK losses also ask for the target's
probability mass on the draft vocabulary per position (``mass`` [S]): the un-renormalised target
probabilities on the draft vocabulary are ``probs · mass``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_ELEMENTS = 2**24  # full-vocabulary logits alive at once (64 MiB in fp32)


def shift_left(x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Drop the first ``n`` positions of dim 1 and append ``n`` zeros: [B, S, ...] -> [B, S, ...]."""
    if n == 0:
        return x
    pad = torch.zeros_like(x[:, :n])
    return torch.cat([x[:, n:], pad], dim=1)


def pad_right(x: torch.Tensor, n: int, value: float = 0.0) -> torch.Tensor:
    """Append ``n`` positions filled with ``value`` along dim 1."""
    pad = torch.full_like(x[:, :1], value).expand(x.shape[0], n, *x.shape[2:])
    return torch.cat([x, pad], dim=1)


@dataclass
class StepTeacher:
    """Teacher tensors for one TTT step, aligned with the draft's positions [B, S]."""

    probs: torch.Tensor  # [B, S, Vd] target distribution renormalised over the draft vocab (>= fp32)
    target_ids: torch.Tensor  # [B, S] target argmax over the full vocab
    position_mask: torch.Tensor  # [B, S] loss_mask and "argmax is in the draft vocab"
    loss_mask: torch.Tensor  # [B, S] loss_mask (accuracy denominator)
    mass: torch.Tensor | None = None  # [B, S] Σ_{v in draft} p_target(v) (LK losses only)


@dataclass
class Teacher:
    """Teacher tensors for all steps, padded to S + ttt_length positions."""

    probs: torch.Tensor  # [B, S+T, Vd]
    target_ids: torch.Tensor  # [B, S+T]
    position_mask: torch.Tensor  # [B, S+T]
    loss_mask: torch.Tensor  # [B, S+T]
    seq_len: int
    mass: torch.Tensor | None = None  # [B, S+T], 0 in the padding

    def step(self, k: int) -> StepTeacher:
        """Step k reads the teacher at position t+k."""
        window = slice(k, k + self.seq_len)
        return StepTeacher(self.probs[:, window], self.target_ids[:, window],
                           self.position_mask[:, window], self.loss_mask[:, window],
                           None if self.mass is None else self.mass[:, window])


@torch.no_grad()
def build_teacher(last_hidden: torch.Tensor, loss_mask: torch.Tensor, attention_mask: torch.Tensor,
                  head_weight: torch.Tensor, t2d: torch.Tensor, ttt_length: int,
                  chunk_elements: int | None = None, with_mass: bool = False) -> Teacher:
    """Shift, apply the frozen target lm_head, renormalise over the draft vocab, pad for TTT.

    last_hidden [B, S, H] (the lm_head input, after the target's final norm); loss_mask and
    attention_mask [B, S]; head_weight [V, H]; t2d [V] bool. ``chunk_elements`` bounds the
    full-vocabulary logits alive at once (default ``CHUNK_ELEMENTS``). ``with_mass`` also returns
    the target's probability mass on the draft vocabulary per position (0 in the padding).
    """
    budget = CHUNK_ELEMENTS if chunk_elements is None else chunk_elements
    bsz, seq_len = last_hidden.shape[:2]
    vocab = head_weight.shape[0]
    hidden = shift_left(last_hidden.to(head_weight.dtype))  # [B, S, H]: h_{t+1}
    work = torch.promote_types(head_weight.dtype, torch.float32)  # fp32, or fp64 in exact tests
    draft_ids = t2d.nonzero().flatten()  # [Vd] target ids of the draft vocab, ascending
    vd = draft_ids.numel()
    probs = torch.full((bsz, seq_len + ttt_length, vd), 1.0 / vd, dtype=work, device=hidden.device)
    target_ids = torch.zeros(bsz, seq_len + ttt_length, dtype=torch.long, device=hidden.device)
    mass = torch.zeros(bsz, seq_len + ttt_length, dtype=work, device=hidden.device) if with_mass else None
    step = max(1, budget // (bsz * vocab))
    for start in range(0, seq_len, step):
        end = min(start + step, seq_len)
        logits = (hidden[:, start:end] @ head_weight.T).to(work)  # [B, c, V]
        target_ids[:, start:end] = logits.argmax(-1)
        if mass is None:
            probs[:, start:end] = torch.softmax(logits[..., draft_ids], dim=-1)  # [B, c, Vd]
        else:
            draft_logits = logits[..., draft_ids]  # [B, c, Vd]
            probs[:, start:end] = torch.softmax(draft_logits, dim=-1)
            mass[:, start:end] = torch.exp(torch.logsumexp(draft_logits, -1) - torch.logsumexp(logits, -1))
            del draft_logits
        del logits
    has_next = shift_left(attention_mask.long())  # [B, S]: 1 where x_{t+1} is a real token
    mask = loss_mask.to(work) * has_next.to(work)  # [B, S]
    position_mask = mask * t2d[target_ids[:, :seq_len]].to(work)  # [B, S]
    return Teacher(
        probs=probs,
        target_ids=target_ids,
        position_mask=pad_right(position_mask, ttt_length),
        loss_mask=pad_right(mask, ttt_length),
        seq_len=seq_len,
        mass=mass,
    )
