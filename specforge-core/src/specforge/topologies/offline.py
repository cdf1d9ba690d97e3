"""``offline``: capture every sample into a store first, then train N epochs from it.

With a cross-process store (disk) the ranks split the capture and share the result; with a
process-local store each rank captures what its own plan needs. Samples already in the store
(an earlier run, `specforge capture`, an interrupted capture) are reused, not recaptured.
"""

from __future__ import annotations

import logging

from specforge.capture import capture_into_store
from specforge.contracts import FeatureRecord
from specforge.job import Job
from specforge.topologies.common import data_plan, run_training
from specforge.topologies.options import OfflineOptions
from specforge.training.distributed import all_gather_object, barrier
from specforge.training.trainer import TrainResult

log = logging.getLogger(__name__)



class OfflineTopology:
    def __init__(self, options: OfflineOptions) -> None:
        self.options = options

    def run(self, job: Job) -> TrainResult:
        ctx, plan = job.ctx, data_plan(job)
        shared = job.store.cross_process and ctx.distributed
        mine = list(range(ctx.rank, len(job.samples), ctx.world_size)) if shared else plan.needed_by(ctx.rank)
        summary = capture_into_store(job.engine, [job.samples[i] for i in mine], job.request, job.store,
                                     batch_size=job.config.training.capture_batch_size, progress=ctx.is_main)
        records: dict[str, FeatureRecord] = dict(summary.records)
        if shared:
            barrier(ctx)
            for part in all_gather_object(ctx, {k: r.to_json() for k, r in summary.records.items()}):
                records.update({k: FeatureRecord.from_json(r) for k, r in part.items()})
        if ctx.is_main:
            for line in summary.lines():
                log.info("capture: %s", line)
        by_index = [records.get(s.sample_id) for s in job.samples]

        def fetch(indices, epoch):
            return job.store.get_many([by_index[i] for i in indices])

        return run_training(job, plan, fetch)
