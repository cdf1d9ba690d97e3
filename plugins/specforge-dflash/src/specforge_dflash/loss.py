"""Per-slot cross-entropy over the frozen target lm_head, in memory-bounded chunks, and its reduction.

The vocabulary projection of N·bs slots is the largest activation of a DFlash step, so slot
losses are computed over chunks of kept blocks with non-reentrant activation checkpointing:
at most ``chunk`` blocks of logits exist at once, forward or backward, and the result equals
one full pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from specforge.api import LossOutput
from specforge_dflash.labels import BlockTargets

HALF = (torch.float16, torch.bfloat16)


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., V], labels [...] -> (cross-entropy [...], argmax == label [...])."""
    acc = torch.float32 if logits.dtype in HALF else logits.dtype
    ce = F.cross_entropy(logits.to(acc).flatten(0, -2), labels.flatten(), reduction="none")
    return ce.view(labels.shape), logits.argmax(-1) == labels


def map_kept_blocks(fn: Callable[..., tuple[torch.Tensor, ...]], inputs: tuple[torch.Tensor, ...],
                    keep: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    """Apply ``fn`` to kept blocks, ``chunk`` blocks at a time; scatter results back to [B, N, ...].

    ``inputs`` are [B, N, bs, ...]; ``fn`` takes them as [M, bs, ...] and returns tensors
    [M, bs]. Unkept blocks get zeros (False for booleans) and cost nothing.
    """
    B, N = keep.shape
    idx = keep.flatten().nonzero().squeeze(1)  # [M]
    if idx.numel() == 0:
        raise ValueError("no kept block to compute a loss on")
    flat = [t.flatten(0, 1).index_select(0, idx) for t in inputs]  # [M, bs, ...]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in flat)
    pieces = []
    for start in range(0, idx.numel(), chunk):
        args = [t[start:start + chunk] for t in flat]
        pieces.append(checkpoint(fn, *args, use_reentrant=False) if grad else fn(*args))
    outputs = []
    for parts in zip(*pieces):
        part = torch.cat(parts)  # [M, bs]
        full = part.new_zeros((B * N, *part.shape[1:])).index_copy(0, idx, part)
        outputs.append(full.view(B, N, *part.shape[1:]))
    return tuple(outputs)


def weighted_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ values·weights in the wider of the two float types (booleans count as 0/1)."""
    if values.is_floating_point():
        return (values * weights.to(values.dtype)).sum()
    return (values.to(weights.dtype) * weights).sum()


def accept_lengths(correct: torch.Tensor, binary: torch.Tensor,
                   keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ over kept blocks of 1 + longest all-correct supervised prefix, number of kept blocks).

    Unsupervised slots count as correct and add nothing, as in the reference metric.
    """
    supervised = binary > 0
    ok = correct | ~supervised
    prefix = ok.long().cumprod(-1)  # [B, N, bs]: still all correct up to here
    length = (prefix * supervised).sum(-1)  # [B, N]
    return ((1 + length) * keep).sum().to(binary.dtype), keep.sum().to(binary.dtype)


def dflash_loss_output(out: dict[str, torch.Tensor], targets: BlockTargets, keep: torch.Tensor) -> LossOutput:
    """Global token mean: ``terms = (Σ CE·w, Σ w)``; accuracy and accept length as ratios."""
    numerator = weighted_sum(out["ce"], targets.weights)
    denominator = targets.weights.sum()
    binary = targets.binary
    with torch.no_grad():
        ratios = {
            "accuracy": (weighted_sum(out["correct"], binary), binary.sum()),
            "accept_len": accept_lengths(out["correct"], binary, keep),
        }
    return LossOutput(terms=(numerator, denominator), ratio_metrics=ratios,
                      metrics={"blocks": float(keep.sum().item())})
