"""DSpark's heads on top of the DFlash backbone's per-slot hidden states.

A Markov head adds a low-rank bias to each slot's base logits from the token *before* the slot's
label (ground truth in training, the draft's own pick when decoding), which gives the parallel
block a first-order dependency between neighbouring draft tokens:

* vanilla: ``bias = W2(W1[x_prev])``;
* gated:   ``bias = W2(σ(gate_proj([h ; W1[x_prev]])) ⊙ W1[x_prev])``;
* rnn:     a state ``s`` (zero at slot 0) with ``[g, c, o] = joint_proj([s ; W1[x_prev] ; h])``,
  ``s ← σ(g)·s + (1−σ(g))·tanh(c)``, ``bias = W2(tanh(o))``.

The confidence head maps ``h`` (optionally with ``W1[x_prev]``) to one logit: the predicted
probability that the target accepts the slot's token. Module and parameter names are the ones
SGLang's DSpark loader reads (``markov_head.markov_w1``, ``confidence_head.proj``, ...).
"""

from __future__ import annotations

import torch
from torch import nn


class MarkovHead(nn.Module):
    """Vanilla head; subclasses change ``latent`` (and whether it carries a state)."""

    head_type = "vanilla"
    recurrent = False

    def __init__(self, vocab_size: int, rank: int, hidden_size: int) -> None:
        super().__init__()
        self.rank = rank
        self.markov_w1 = nn.Embedding(vocab_size, rank)
        self.markov_w2 = nn.Linear(rank, vocab_size, bias=False)

    def embed(self, prev_ids: torch.Tensor) -> torch.Tensor:
        """W1[x_prev]: [...] -> [..., r]."""
        return self.markov_w1(prev_ids.long())

    def latent(self, state: torch.Tensor | None, emb: torch.Tensor,
               hidden: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(next state, r-dim latent the bias is projected from); emb [..., r], hidden [..., H]."""
        return state, emb

    def initial_state(self, like: torch.Tensor) -> torch.Tensor | None:
        """The state before slot 0 for a batch shaped like ``like`` [..., r] (None: stateless)."""
        return None

    def step(self, state: torch.Tensor | None, prev_ids: torch.Tensor,
             hidden: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One slot: prev_ids [M], hidden [M, H] -> (state, bias [M, V])."""
        state, z = self.latent(state, self.embed(prev_ids).to(hidden.dtype), hidden)
        return state, self.markov_w2(z)

    def block_bias(self, prev_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Teacher-forced bias for whole blocks: prev_ids [M, bs], hidden [M, bs, H] -> [M, bs, V]."""
        emb = self.embed(prev_ids).to(hidden.dtype)  # [M, bs, r]
        if not self.recurrent:
            return self.markov_w2(self.latent(None, emb, hidden)[1])
        state = self.initial_state(emb[:, 0])
        latents = []
        for k in range(prev_ids.shape[1]):
            state, z = self.latent(state, emb[:, k], hidden[:, k])
            latents.append(z)
        return self.markov_w2(torch.stack(latents, dim=1))

    @torch.no_grad()
    def greedy(self, base_logits: torch.Tensor, hidden: torch.Tensor, first_prev: torch.Tensor) -> torch.Tensor:
        """Decode a block slot by slot, each pick becoming the next slot's previous token.

        base_logits [M, bs, V], hidden [M, bs, H], first_prev [M] (the anchor) -> tokens [M, bs].
        """
        prev, state, picks = first_prev.long(), None, []
        for k in range(base_logits.shape[1]):
            if k == 0:
                state = self.initial_state(self.embed(prev).to(hidden.dtype))
            state, bias = self.step(state, prev, hidden[:, k])
            prev = (base_logits[:, k] + bias).argmax(-1)
            picks.append(prev)
        return torch.stack(picks, dim=1)


class GatedMarkovHead(MarkovHead):
    head_type = "gated"

    def __init__(self, vocab_size: int, rank: int, hidden_size: int) -> None:
        super().__init__(vocab_size, rank, hidden_size)
        self.gate_proj = nn.Linear(hidden_size + rank, rank)

    def latent(self, state, emb, hidden):
        gate = torch.sigmoid(self.gate_proj(torch.cat([hidden, emb], dim=-1)))
        return state, gate * emb


class RNNMarkovHead(MarkovHead):
    head_type = "rnn"
    recurrent = True

    def __init__(self, vocab_size: int, rank: int, hidden_size: int) -> None:
        super().__init__(vocab_size, rank, hidden_size)
        self.joint_proj = nn.Linear(2 * rank + hidden_size, 3 * rank)

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(like)

    def latent(self, state, emb, hidden):
        g, c, o = self.joint_proj(torch.cat([state, emb, hidden], dim=-1)).chunk(3, dim=-1)
        keep = torch.sigmoid(g)
        return keep * state + (1.0 - keep) * torch.tanh(c), torch.tanh(o)


MARKOV_HEADS = {cls.head_type: cls for cls in (MarkovHead, GatedMarkovHead, RNNMarkovHead)}


def build_markov_head(head_type: str, vocab_size: int, rank: int, hidden_size: int) -> MarkovHead:
    return MARKOV_HEADS[head_type](vocab_size, rank, hidden_size)


class ConfidenceHead(nn.Module):
    """features [..., H (+r)] -> acceptance logit [...]."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features).squeeze(-1)
