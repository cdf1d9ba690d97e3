"""The element lists a P-EAGLE forward scores: COD-sampled for training, context plus one chain
for drafting. Each sample is its own document; a batch pads its samples' lists to one width
with padding elements (document -1), which no real element sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from specforge_eagle3.teacher import shift_left
from specforge_peagle.cod import CodSample, cod_sample, cod_seed

Elements = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # anchors, depths, documents, each [B, N]


def stack_elements(samples: Sequence[CodSample], device: torch.device | None = None) -> Elements:
    """Per-sample pair lists -> padded [B, N] anchors, depths and documents (0, or -1 for padding)."""
    width = max(s.anchors.numel() for s in samples)
    anchors = torch.zeros(len(samples), width, dtype=torch.int64, device=device)
    depths = torch.zeros_like(anchors)
    documents = torch.full_like(anchors, -1)
    for b, s in enumerate(samples):
        n = s.anchors.numel()
        anchors[b, :n], depths[b, :n], documents[b, :n] = s.anchors, s.depths, 0
    return anchors, depths, documents


def supervised_positions(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Bool [B, S]: supervised positions that have a teacher (a real next token)."""
    has_next = shift_left(batch["attention_mask"].long()) > 0
    return (batch["loss_mask"] > 0) & has_next


def training_elements(batch: Mapping[str, torch.Tensor], num_depths: int, ratio: float, ratio_min: float,
                      step: int, micro_step: int) -> Elements:
    """COD-sample every sample of a collated batch, each with its own seeded generator."""
    supervised = supervised_positions(batch)
    lengths = batch["attention_mask"].sum(1).tolist()
    samples = []
    for b, (length, sample_hash) in enumerate(zip(lengths, batch["sample_hash"].tolist())):
        generator = torch.Generator().manual_seed(cod_seed(int(sample_hash), step, micro_step))
        documents = torch.full_like(batch["input_ids"][b], -1)
        documents[:int(length)] = 0
        samples.append(cod_sample(supervised[b], documents, num_depths, ratio, ratio_min, generator))
    return stack_elements(samples, supervised.device)


def drafting_elements(context: int, k: int, device: torch.device | None = None) -> Elements:
    """Positions 0..context-1 at depth 0 (the anchor is the last), then depths 1..k-1 of its chain: [1, context+k-1]."""
    last = context - 1
    anchors = torch.cat([torch.arange(context), torch.full((k - 1,), last)]).to(device)[None]
    depths = torch.cat([torch.zeros(context, dtype=torch.int64), torch.arange(1, k)]).to(device)[None]
    return anchors, depths, torch.zeros_like(anchors)
