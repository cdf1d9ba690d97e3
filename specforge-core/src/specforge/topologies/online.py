"""``online``: capture and train batch by batch in one process group (default store: memory).

Each rank captures exactly the micro-batch it is about to train on, puts it through the store
(so any store works here) and deletes it after reading: nothing accumulates.
"""

from __future__ import annotations

import itertools

from specforge.contracts import RunContext, TrainResult
from specforge.topologies.base import TopologyBase
from specforge.topologies.options import OnlineOptions


class OnlineTopology(TopologyBase):
    def __init__(self, options: OnlineOptions) -> None:
        self.options = options

    def train(self, run: RunContext) -> TrainResult:
        generation = itertools.count()
        engine = run.engine
        assert engine is not None, "the online topology captures: its trainers hold an engine"

        def fetch(indices, epoch):
            samples = [run.samples[i] for i in indices]
            features = engine.capture(samples, run.request)
            gen = next(generation)
            records = [run.store.put(run.feature_key(s, gen), f) for s, f in zip(samples, features)]
            out = run.store.get_many(records)
            for record in records:
                run.store.delete(record)
            return out

        return run.train(fetch)
