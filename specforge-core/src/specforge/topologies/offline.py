"""``offline``: capture every sample the planned steps read into a store first, then train from it.

With a cross-process store (disk) the ranks split the capture and share the result; with a
process-local store each rank captures what its own plan needs. A run cut short by
``training.max_steps`` captures only the samples those steps read. Samples already in the store
(an earlier run, `specforge capture`, an interrupted capture) are reused, not recaptured.
"""

from __future__ import annotations

import logging

from specforge.contracts import FeatureRecord, RunContext, TrainResult
from specforge.topologies.base import TopologyBase
from specforge.topologies.options import OfflineOptions

log = logging.getLogger(__name__)


class OfflineTopology(TopologyBase):
    def __init__(self, options: OfflineOptions) -> None:
        self.options = options

    def train(self, run: RunContext) -> TrainResult:
        from specforge.training.distributed import all_gather_object, barrier  # torch: not at plan time

        dist, plan = run.dist, run.plan()
        shared = run.store.cross_process and dist.distributed
        planned = plan.needed()  # every rank's samples: one seeded permutation per epoch and rank
        mine = planned[dist.rank::dist.world_size] if shared else plan.needed_by(dist.rank)
        summary = run.capture([run.samples[i] for i in mine], progress=dist.is_main)
        records: dict[str, FeatureRecord] = dict(summary.records)
        if shared:
            barrier(dist)
            for part in all_gather_object(dist, {k: r.to_json() for k, r in summary.records.items()}):
                records.update({k: FeatureRecord.from_json(r) for k, r in part.items()})
        if dist.is_main:
            for line in summary.lines():
                log.info("capture: %s", line)
            if plan.max_steps and len(planned) < len(run.samples):
                log.info("capture: the %d planned steps (training.max_steps) read %d of the %d samples; "
                         "the others were not captured", plan.total_steps, len(planned), len(run.samples))
        by_index = [records.get(s.sample_id) for s in run.samples]

        def fetch(indices, epoch):
            return run.store.get_many([by_index[i] for i in indices])

        return run.train(fetch)
