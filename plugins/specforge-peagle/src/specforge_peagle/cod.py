"""COD sampling: which (anchor, depth) pairs one sample trains on (P-EAGLE, arXiv 2602.01469).

Depth 0 keeps every position of the sample. Depth d >= 1 keeps a random subset of the anchors
kept at depth d-1 whose target ``anchor + d`` is supervised and in the anchor's document: about
``(#supervised - d) · max(r^d, r_min)`` of them. The survivors form chains, so an anchor kept at
depth d is kept at every depth below it (what parallel drafting feeds the draft at decode time).

The draw is seeded from (sample content, optimizer step, micro-step), so a resumed run draws the
pairs the interrupted one would have, on any device and rank, whatever the batch around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def content_hash(ids: Sequence[int]) -> int:
    """A stable 63-bit hash of a token sequence (the sample's part of the sampling seed)."""
    data = ",".join(map(str, ids)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def cod_seed(sample_hash: int, step: int, micro_step: int) -> int:
    data = f"peagle-cod/{sample_hash}/{step}/{micro_step}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class CodSample:
    """The sampled pairs of one sample, depth 0 first: element i is (anchors[i], depths[i])."""

    anchors: torch.Tensor  # [N] int64
    depths: torch.Tensor  # [N] int64

    @property
    def positions(self) -> torch.Tensor:
        """The position each element is trained at (its RoPE position and teacher): anchor + depth."""
        return self.anchors + self.depths


def cod_sample(supervised: torch.Tensor, document_ids: torch.Tensor, num_depths: int, ratio: float,
               ratio_min: float, generator: torch.Generator | None = None) -> CodSample:
    """The (anchor, depth) pairs of one sample.

    supervised [S] bool: positions with a teacher and a loss (loss mask and a next token);
    document_ids [S] int64: document of each position, -1 for padding (packed samples hold
    several documents; a pair never crosses one). Padding positions are not kept at depth 0.
    """
    if supervised.dim() != 1 or supervised.shape != document_ids.shape:
        raise ValueError(f"supervised {list(supervised.shape)} and document_ids {list(document_ids.shape)} "
                         f"must both be [S]")
    device = supervised.device
    seq_len = supervised.shape[0]
    valid = torch.nonzero(supervised & (document_ids >= 0)).flatten()  # ascending
    anchors = [torch.nonzero(document_ids >= 0).flatten()]
    depths = [torch.zeros_like(anchors[0])]
    previous = valid  # targets whose chain reached depth d-1 (depth 0: every supervised position)
    for d in range(1, num_depths):
        targets = previous[previous >= d]
        starts = targets - d
        same_doc = document_ids[targets] == document_ids[starts]
        eligible = targets[same_doc]
        size = min(int((valid.numel() - d) * max(ratio ** d, ratio_min)), eligible.numel())
        if size <= 0:
            break
        if eligible.numel() > size:
            pick = torch.randperm(eligible.numel(), generator=generator).to(device)[:size]
            eligible = eligible[pick].sort().values
        anchors.append(eligible - d)
        depths.append(torch.full_like(eligible, d))
        following = eligible + 1  # the same chain one depth further
        following = following[following < seq_len]
        previous = following[supervised[following] & (document_ids[following] >= 0)]
    return CodSample(torch.cat(anchors), torch.cat(depths))
