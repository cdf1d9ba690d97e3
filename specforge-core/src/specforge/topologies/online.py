"""``online``: capture and train batch by batch in one process group (default store: memory).

Each rank captures exactly the micro-batch it is about to train on, puts it through the store
(so any store works here) and deletes it after reading: nothing accumulates.
"""

from __future__ import annotations

import itertools

from specforge.capture import NAMESPACE
from specforge.contracts import FeatureKey
from specforge.job import Job
from specforge.topologies.common import data_plan, run_training
from specforge.topologies.options import OnlineOptions
from specforge.training.trainer import TrainResult


class OnlineTopology:
    def __init__(self, options: OnlineOptions) -> None:
        self.options = options

    def run(self, job: Job) -> TrainResult:
        generation = itertools.count()

        def fetch(indices, epoch):
            samples = [job.samples[i] for i in indices]
            features = job.engine.capture(samples, job.request)
            gen = next(generation)
            records = [job.store.put(FeatureKey(NAMESPACE, s.sample_id, gen), f) for s, f in zip(samples, features)]
            out = job.store.get_many(records)
            for record in records:
                job.store.delete(record)
            return out

        return run_training(job, data_plan(job), fetch)
