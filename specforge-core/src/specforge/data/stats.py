"""Corpus statistics (``DataStats``) of the samples a run trains on."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from specforge.contracts import DataStats, Sample


def sample_digest(sample: Sample) -> bytes:
    """SHA-256 of one sample's token ids and loss mask (not its id: renaming a file keeps it)."""
    text = ",".join(map(str, sample.input_ids)) + "|" + "".join(map(str, sample.loss_mask))
    return hashlib.sha256(text.encode("ascii")).digest()


def compute_stats(samples: Iterable[Sample]) -> DataStats:
    """Counts, loss-token histogram and an order-independent corpus hash.

    The hash covers the sorted per-sample digests, so the same corpus under another shuffle seed
    hashes the same, and any change to a kept sample's tokens or mask changes it.
    """
    counts: Counter[int] = Counter()
    digests = []
    num_samples = num_tokens = num_loss = 0
    for sample in samples:
        num_samples += 1
        num_tokens += len(sample.input_ids)
        num_loss += sample.num_loss_tokens
        counts.update(t for t, m in zip(sample.input_ids, sample.loss_mask) if m)
        digests.append(sample_digest(sample))
    corpus_hash = hashlib.sha256(b"".join(sorted(digests))).hexdigest()
    return DataStats(num_samples=num_samples, num_tokens=num_tokens, num_loss_tokens=num_loss,
                     corpus_hash=corpus_hash, loss_token_counts=counts)
