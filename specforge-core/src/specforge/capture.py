"""Capture target features for samples into a feature store: the first phase of `offline`.

Shared by the offline topology (through ``Run.capture``) and `specforge capture`. A stored sample
is reused only when its fingerprint (``FeatureIdentity.fingerprint``: target, engine and dtype,
feature request, store dtype, the sample's own tokens and loss mask) equals the one this run
would write; otherwise it is captured again as a newer generation, and the summary says how
many and what changed. A read-only store refuses instead, naming what changed. An interrupted
capture continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from specforge.contracts import (
    FeatureKey,
    FeatureRecord,
    FeatureRequest,
    FeatureStore,
    ListableStore,
    Sample,
    TargetEngine,
)
from specforge.errors import UserError
from specforge.progress import PhaseProgress

log = logging.getLogger(__name__)

NAMESPACE = "features"
PARTS = ("target", "engine", "request", "dtype", "sample")
WHAT = {"target": "target model", "engine": "target engine or its dtype", "request": "feature request (layers)",
        "dtype": "store dtype", "sample": "sample tokens or loss mask (data, tokenizer, chat template or max_length)"}


def _short(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class FeatureIdentity:
    """What decides a stored feature's bytes besides the sample itself, as short hashes."""

    target: str
    engine: str
    request: str
    dtype: str = "target"

    @classmethod
    def of(cls, *, target: str, engine: str, engine_options: Any, target_dtype: str, request: FeatureRequest,
           store_dtype: str = "target") -> FeatureIdentity:
        return cls(target=target, engine=_short([engine, engine_options, target_dtype]),
                   request=_short([list(request.layers), request.last_hidden, request.logits]), dtype=store_dtype)

    def fingerprint(self, sample: Sample) -> str:
        from specforge.data.stats import sample_digest

        return (f"target={self.target};engine={self.engine};request={self.request};dtype={self.dtype};"
                f"sample={sample_digest(sample).hex()[:16]}")


def changed_parts(old: str, new: str) -> list[str]:
    """Which parts of two fingerprints differ (all of them when the old one is missing or foreign)."""
    def parse(fp: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in fp.split(";") if "=" in item)

    a, b = parse(old), parse(new)
    return [p for p in PARTS if a.get(p) != b.get(p)] or (["sample"] if old != new else [])


@dataclass
class CaptureSummary:
    records: dict[str, FeatureRecord] = field(default_factory=dict)  # by sample id
    captured: int = 0
    reused: int = 0
    recaptured: int = 0
    changed: Counter = field(default_factory=Counter)  # part -> samples re-captured for it
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, record: FeatureRecord) -> None:
        self.records[record.key.sample_id] = record
        self.tokens += record.num_tokens
        self.bytes += sum(s.nbytes for s in record.specs.values())

    def lines(self) -> list[str]:
        per_token = self.bytes / self.tokens if self.tokens else 0.0
        out = [f"samples  {len(self.records)} ({self.captured} captured, {self.reused} already in the store)"]
        if self.recaptured:
            why = ", ".join(f"{WHAT[p]} changed for {n}" for p, n in self.changed.most_common())
            out.append(f"         {self.recaptured} of the captured were in the store with other features ({why})")
        return [*out, f"tokens   {self.tokens}",
                f"bytes    {self.bytes} ({self.bytes / 2**20:.1f} MiB, {per_token:.0f} bytes per token)",
                f"time     {self.seconds:.1f} s"]


def _existing(store: FeatureStore) -> dict[str, FeatureRecord]:
    if not isinstance(store, ListableStore):
        return {}
    return {r.key.sample_id: r for r in store.records()}


def capture_into_store(engine: TargetEngine, samples: Sequence[Sample], request: FeatureRequest,
                       store: FeatureStore, *, identity: FeatureIdentity, batch_size: int, progress: bool = True,
                       read_only: bool = False) -> CaptureSummary:
    """Capture every sample whose identical features the store does not hold; records of all of them."""
    started = time.perf_counter()
    summary = CaptureSummary()
    existing = _existing(store)
    todo: list[tuple[Sample, FeatureKey]] = []
    stale: Counter = Counter()
    for sample in samples:
        fingerprint = identity.fingerprint(sample)
        rec = existing.get(sample.sample_id)
        if rec is not None and rec.key.fingerprint == fingerprint and store.exists(rec.key):
            summary.add(rec)
            summary.reused += 1
            continue
        generation = 0
        if rec is not None:
            generation = rec.key.generation + 1
            for part in changed_parts(rec.key.fingerprint, fingerprint):
                stale[part] += 1
            summary.recaptured += 1
        todo.append((sample, FeatureKey(NAMESPACE, sample.sample_id, generation, fingerprint)))
    if stale and read_only:
        why = "; ".join(f"{n} sample(s) with another {WHAT[p]}" for p, n in stale.most_common())
        raise UserError(f"the read-only feature store holds features that do not match this run ({why}); "
                        f"capture them again into a writable store, or run with the settings they were captured with")
    summary.changed = stale
    bar = PhaseProgress("capture", len(todo), "samples", log=log, enabled=progress)
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            features = engine.capture([s for s, _ in chunk], request)
            for (_, key), feats in zip(chunk, features):
                summary.add(store.put(key, feats))
                summary.captured += 1
            bar.update(len(chunk))
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
