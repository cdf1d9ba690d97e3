"""Pad per-sample DFlash features into one batch (zeros; padding has loss_mask 0)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from specforge_dflash.anchors import content_hash

REQUIRED = ("input_ids", "loss_mask", "hidden_states")


def collate_samples(samples: Sequence[dict]) -> dict[str, torch.Tensor]:
    """``input_ids``/``loss_mask`` [B, S], ``hidden_states`` [B, S, K·H], ``sample_hash`` [B]."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    for i, sample in enumerate(samples):
        missing = [name for name in REQUIRED if name not in sample]
        if missing:
            raise ValueError(f"sample {i} lacks features {missing}; DFlash needs {list(REQUIRED)} "
                             "(capture them with this strategy's feature request)")
    ids = [torch.as_tensor(s["input_ids"]).long().flatten() for s in samples]
    masks = [torch.as_tensor(s["loss_mask"]).flatten() for s in samples]
    feats = [torch.as_tensor(s["hidden_states"]) for s in samples]
    feats = [f[0] if f.dim() == 3 else f for f in feats]  # accept [1, S, W] as stored upstream
    widths = {f.shape[-1] for f in feats}
    if len(widths) != 1:
        raise ValueError(f"samples have hidden_states of different widths {sorted(widths)}; "
                         "they were captured with different target layers")
    for i, (t, m, f) in enumerate(zip(ids, masks, feats)):
        if not len(t) == len(m) == f.shape[0]:
            raise ValueError(f"sample {i}: {len(t)} input ids, {len(m)} loss-mask entries and "
                             f"{f.shape[0]} feature rows must agree")
    B, S, W = len(samples), max(len(t) for t in ids), widths.pop()
    input_ids = torch.zeros(B, S, dtype=torch.long)
    loss_mask = torch.zeros(B, S, dtype=torch.long)
    hidden = torch.zeros(B, S, W, dtype=feats[0].dtype)
    for b, (t, m, f) in enumerate(zip(ids, masks, feats)):
        input_ids[b, :len(t)] = t
        loss_mask[b, :len(m)] = m.long()
        hidden[b, :len(t)] = f
    hashes = torch.tensor([content_hash(t.tolist()) for t in ids], dtype=torch.long)
    return {"input_ids": input_ids, "loss_mask": loss_mask, "hidden_states": hidden, "sample_hash": hashes}
