"""The draft vocabulary: the most frequent supervised tokens of the corpus, and the id maps.

``d2t`` [Vd] int64 holds offsets (``target_id = draft_id + d2t[draft_id]``; what SGLang reads);
``t2d`` [V] bool marks the target ids that are in the draft vocabulary. Draft ids follow
ascending target ids, so ``logits_target[..., t2d]`` lines up with draft ids.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


class DraftVocabBuffers:
    """For a draft module with ``d2t`` [Vd] and ``t2d`` [V] buffers (EAGLE3, P-EAGLE): load a
    mapping into them and map draft ids to target ids."""

    d2t: torch.Tensor
    t2d: torch.Tensor

    def set_vocab(self, d2t: torch.Tensor, t2d: torch.Tensor) -> None:
        if d2t.shape != self.d2t.shape or t2d.shape != self.t2d.shape:
            raise ValueError(f"vocab mapping of sizes ({d2t.numel()}, {t2d.numel()}) does not fit a draft "
                             f"with draft_vocab_size {self.d2t.numel()} and vocab {self.t2d.numel()}")
        with torch.no_grad():
            self.d2t.copy_(d2t)
            self.t2d.copy_(t2d)

    def to_target_ids(self, draft_ids: torch.Tensor) -> torch.Tensor:
        return draft_ids + self.d2t[draft_ids]


@dataclass(frozen=True)
class VocabMapping:
    """Target ids of the draft vocabulary in draft-id order (ascending), and the target vocab size."""

    target_ids: tuple[int, ...]
    vocab_size: int

    @property
    def draft_vocab_size(self) -> int:
        return len(self.target_ids)

    def d2t(self) -> torch.Tensor:
        ids = torch.tensor(self.target_ids, dtype=torch.int64)
        return ids - torch.arange(len(ids), dtype=torch.int64)  # [Vd]

    def t2d(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[list(self.target_ids)] = True
        return mask  # [V]

    @classmethod
    def from_d2t(cls, d2t: Sequence[int] | torch.Tensor, vocab_size: int) -> VocabMapping:
        d2t = torch.as_tensor(d2t, dtype=torch.int64)
        ids = (d2t + torch.arange(len(d2t))).tolist()
        return cls(tuple(ids), vocab_size).checked()

    def checked(self) -> VocabMapping:
        """Raise ValueError unless the ids are strictly ascending and inside the target vocab."""
        ids = self.target_ids
        if not ids:
            raise ValueError("empty draft vocabulary")
        if any(b <= a for a, b in itertools.pairwise(ids)):
            raise ValueError("draft vocabulary target ids must be strictly ascending (a corrupt d2t?)")
        if ids[0] < 0 or ids[-1] >= self.vocab_size:
            raise ValueError(f"draft vocabulary holds target ids outside 0..{self.vocab_size - 1}")
        return self


def effective_draft_vocab_size(requested: int, vocab_size: int) -> int:
    """The requested size, clamped to the target vocabulary."""
    if requested > vocab_size:
        log.info("draft_vocab_size %d exceeds the target vocabulary; using %d", requested, vocab_size)
    return min(requested, vocab_size)


def build_vocab_mapping(counts: Mapping[int, int], draft_vocab_size: int, vocab_size: int) -> VocabMapping:
    """The ``draft_vocab_size`` most frequent ids of ``counts`` (supervised input tokens).

    When fewer distinct ids were seen, ids ``0, 1, ...`` not yet chosen fill the rest (count 0).
    Ties go to the lower id, so the result is deterministic.
    """
    size = effective_draft_vocab_size(draft_vocab_size, vocab_size)
    bad = sorted(t for t in counts if not 0 <= int(t) < vocab_size)
    if bad:
        raise ValueError(f"token counts hold ids {bad[:5]} outside the target vocabulary 0..{vocab_size - 1}; "
                         f"were the data tokenized for another model?")
    ranked = sorted(((int(c), int(t)) for t, c in counts.items()), key=lambda ct: (-ct[0], ct[1]))
    chosen = [t for _, t in ranked[:size]]
    if len(chosen) < size:
        seen = set(chosen)
        filler = (t for t in range(vocab_size) if t not in seen)
        chosen += [next(filler) for _ in range(size - len(chosen))]
    return VocabMapping(tuple(sorted(chosen)), vocab_size)
