"""DFlash's batch plus the target's last hidden state ``last_hidden`` [B, S, H] (zero-padded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from specforge_dflash.collate import collate_samples


def collate_with_last_hidden(samples: Sequence[dict], need_last_hidden: bool) -> dict[str, torch.Tensor]:
    """``collate_samples`` and, when the loss reads the teacher, ``last_hidden`` padded like the features."""
    batch = collate_samples(samples)
    if not need_last_hidden:
        return batch
    missing = [i for i, s in enumerate(samples) if "last_hidden" not in s]
    if missing:
        raise ValueError(f"samples {missing} lack the 'last_hidden' feature DSpark's L1 and confidence losses "
                         "read; capture them with this strategy's feature request")
    rows = [torch.as_tensor(s["last_hidden"]) for s in samples]
    rows = [r[0] if r.dim() == 3 else r for r in rows]  # accept [1, S, H] as stored upstream
    B, S = batch["input_ids"].shape
    last = torch.zeros(B, S, rows[0].shape[-1], dtype=rows[0].dtype)
    for b, (sample, row) in enumerate(zip(samples, rows)):
        tokens = torch.as_tensor(sample["input_ids"]).numel()
        if row.shape[0] != tokens:
            raise ValueError(f"sample {b}: {tokens} input ids but {row.shape[0]} last_hidden rows")
        last[b, :tokens] = row
    batch["last_hidden"] = last
    return batch
