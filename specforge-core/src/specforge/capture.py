"""Capture target features for samples into a feature store: the first phase of `offline`.

Shared by the offline topology and `specforge capture`; skips samples the store already holds,
so an interrupted capture continues where it stopped.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from specforge.contracts import FeatureKey, FeatureRecord, FeatureRequest, FeatureStore, Sample, TargetEngine

log = logging.getLogger(__name__)

NAMESPACE = "features"


def feature_key(sample: Sample) -> FeatureKey:
    return FeatureKey(namespace=NAMESPACE, sample_id=sample.sample_id, generation=0)


@dataclass
class CaptureSummary:
    records: dict[str, FeatureRecord] = field(default_factory=dict)  # by sample id
    captured: int = 0
    reused: int = 0
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, record: FeatureRecord) -> None:
        self.records[record.key.sample_id] = record
        self.tokens += record.num_tokens
        self.bytes += sum(s.nbytes for s in record.specs.values())

    def lines(self) -> list[str]:
        per_token = self.bytes / self.tokens if self.tokens else 0.0
        return [f"samples  {len(self.records)} ({self.captured} captured, {self.reused} already in the store)",
                f"tokens   {self.tokens}",
                f"bytes    {self.bytes} ({self.bytes / 2**20:.1f} MiB, {per_token:.0f} bytes per token)",
                f"time     {self.seconds:.1f} s"]


def _existing(store: FeatureStore) -> dict[str, FeatureRecord]:
    records = getattr(store, "records", None)
    return {r.key.sample_id: r for r in records()} if callable(records) else {}


def capture_into_store(engine: TargetEngine, samples: Sequence[Sample], request: FeatureRequest,
                       store: FeatureStore, *, batch_size: int, progress: bool = True) -> CaptureSummary:
    """Capture every sample not yet in ``store``; return the records of all of them."""
    started = time.perf_counter()
    summary = CaptureSummary()
    existing = _existing(store)
    todo = []
    for sample in samples:
        rec = existing.get(sample.sample_id)
        if rec is not None and store.exists(rec.key):
            summary.add(rec)
            summary.reused += 1
        else:
            todo.append(sample)
    bar = None
    if progress and todo and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="capture", unit="sample", dynamic_ncols=True)
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        features = engine.capture(chunk, request)
        for sample, feats in zip(chunk, features):
            summary.add(store.put(feature_key(sample), feats))
            summary.captured += 1
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
