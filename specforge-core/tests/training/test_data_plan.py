"""The data plan names exactly the samples the planned steps read, so an offline run captures no
more: every sample of the kept epochs without ``max_steps``, only the first steps' with it."""

from __future__ import annotations

from specforge.training.plan import DataPlan


def _read(plan: DataPlan, rank: int) -> set[int]:
    """What the trainer reads: the first total_steps · accumulation micro-batches, epoch after epoch."""
    micro = [b for e in range(plan.epochs) for b in plan.epoch_batches(e, rank)]
    return {i for b in micro[:plan.total_steps * plan.accumulation] for i in b}


def test_without_max_steps_every_sample_of_the_epochs_is_needed_but_the_dropped_tail() -> None:
    plan = DataPlan(num_samples=12, batch_size=4, accumulation=1, world_size=1, epochs=1, seed=0)
    assert plan.needed_by(0) == list(range(12))
    tail = DataPlan(num_samples=10, batch_size=4, accumulation=1, world_size=1, epochs=1, seed=0)
    assert len(tail.needed_by(0)) == 8 and set(tail.needed_by(0)) == _read(tail, 0)


def test_max_steps_keeps_only_what_those_steps_read() -> None:
    plan = DataPlan(num_samples=100, batch_size=4, accumulation=2, world_size=1, epochs=3, seed=7, max_steps=2)
    needed = plan.needed_by(0)
    assert len(needed) == 2 * 2 * 4  # 2 steps of 2 micro-batches of 4 distinct samples
    assert set(needed) == _read(plan, 0)


def test_max_steps_past_an_epoch_reads_into_the_next_one() -> None:
    plan = DataPlan(num_samples=10, batch_size=4, accumulation=1, world_size=1, epochs=3, seed=1, max_steps=3)
    first_epoch = {i for b in plan.epoch_batches(0, 0) for i in b}  # its 2 steps: 8 samples
    third_step = set(plan.epoch_batches(1, 0)[0])
    assert set(plan.needed_by(0)) == first_epoch | third_step == _read(plan, 0)


def test_every_rank_needs_its_own_share_and_needed_is_their_union() -> None:
    plan = DataPlan(num_samples=64, batch_size=2, accumulation=1, world_size=2, epochs=2, seed=3, max_steps=3)
    ranks = [set(plan.needed_by(r)) for r in range(2)]
    assert all(len(r) <= 3 * 2 * 2 and r == _read(plan, i) for i, r in enumerate(ranks))
    assert plan.needed() == sorted(ranks[0] | ranks[1])
