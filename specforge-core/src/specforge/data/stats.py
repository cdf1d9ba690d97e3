"""Corpus statistics (``DataStats``) of the samples a run trains on, accumulated in one pass.

The corpus hash is the sum, modulo 2**256, of every sample's SHA-256 digest: independent of the
order (the same corpus under another shuffle seed hashes the same), changed by any change to a
kept sample's tokens or mask, and computable in constant memory. Because it is a sum, a subset
(the held-out split, dropped duplicates) is taken out of a corpus's statistics by subtracting its
samples, without reading the rest again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

from specforge.contracts import DataStats, Sample

_MOD = 1 << 256


def sample_digest(sample: Sample) -> bytes:
    """SHA-256 of one sample's token ids and loss mask (not its id: renaming a file keeps it)."""
    text = ",".join(map(str, sample.input_ids)) + "|" + "".join(map(str, sample.loss_mask))
    return hashlib.sha256(text.encode("ascii")).digest()


class StatsAccumulator:
    """Counts, the loss-token histogram and the corpus-hash sum; add and remove samples one at a time."""

    def __init__(self) -> None:
        self.num_samples = 0
        self.num_tokens = 0
        self.num_loss_tokens = 0
        self.loss_token_counts: Counter[int] = Counter()
        self._hash_sum = 0

    def add(self, sample: Sample, sign: int = 1) -> None:
        self.num_samples += sign
        self.num_tokens += sign * len(sample.input_ids)
        self.num_loss_tokens += sign * sample.num_loss_tokens
        trained = Counter(t for t, m in zip(sample.input_ids, sample.loss_mask) if m)
        if sign > 0:
            self.loss_token_counts.update(trained)
        else:
            self.loss_token_counts.subtract(trained)
            self.loss_token_counts = +self.loss_token_counts  # drop ids whose count fell to zero
        self._hash_sum = (self._hash_sum + sign * int.from_bytes(sample_digest(sample), "big")) % _MOD

    def remove(self, sample: Sample) -> None:
        self.add(sample, sign=-1)

    @property
    def corpus_hash(self) -> str:
        return f"{self._hash_sum:064x}"

    def stats(self) -> DataStats:
        return DataStats(num_samples=self.num_samples, num_tokens=self.num_tokens,
                         num_loss_tokens=self.num_loss_tokens, corpus_hash=self.corpus_hash,
                         loss_token_counts=Counter(self.loss_token_counts))

    @classmethod
    def from_stats(cls, stats: DataStats) -> StatsAccumulator:
        """Continue from known statistics (a tokenized dataset's metadata)."""
        acc = cls()
        acc.num_samples, acc.num_tokens, acc.num_loss_tokens = stats.num_samples, stats.num_tokens, \
            stats.num_loss_tokens
        acc.loss_token_counts = Counter(stats.loss_token_counts)
        acc._hash_sum = int(stats.corpus_hash, 16)
        return acc


def compute_stats(samples: Iterable[Sample]) -> DataStats:
    """Counts, loss-token histogram and the order-independent corpus hash of ``samples``."""
    acc = StatsAccumulator()
    for sample in samples:
        acc.add(sample)
    return acc.stats()


def counts_to_json(counts: Mapping[int, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(counts.items())}


def counts_from_json(obj: Mapping[str, int]) -> Counter[int]:
    return Counter({int(k): int(v) for k, v in obj.items()})
