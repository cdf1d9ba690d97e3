"""The strategies train on bfloat16-stored features: the loss stays within a stated tolerance of float32's
and still falls (what ``store.dtype = "bfloat16"`` costs in accuracy)."""

from __future__ import annotations

import pytest
import torch

from specforge.contracts import FeatureKey
from specforge.stores.disk import DiskStore
from specforge.stores.options import DiskStoreOptions
from specforge.testing.strategy_kit import make_case, seeded_loss, train

CASES = {"eagle3": {"ttt_length": 3}, "dflash": {"block_size": 4, "num_anchors": 16, "num_draft_layers": 2}}
TOLERANCE = 1e-3  # relative; measured: 4e-6 (eagle3), 2e-7 (dflash) at initialisation


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_on_bfloat16_stored_features_is_close_to_float32_and_falls(name, tmp_path):
    torch.set_num_threads(1)
    case = make_case(name, CASES[name])
    store = DiskStore(DiskStoreOptions(dtype="bfloat16"), root=tmp_path)
    records = [store.put(FeatureKey("features", f"s{i}"), s) for i, s in enumerate(case.samples)]
    stored = store.get_many(records)
    assert any(not torch.equal(a[n], b[n]) for a, b in zip(stored, case.samples) for n in a), "really rounded"
    torch.manual_seed(0)
    draft = case.strategy.build_draft(case.info, case.stats)
    exact = seeded_loss(case, draft, case.strategy.collate(case.samples))
    rounded = seeded_loss(case, draft, case.strategy.collate(stored))
    assert abs(float(rounded) - float(exact)) <= TOLERANCE * abs(float(exact)), (float(exact), float(rounded))
    losses = train(case, draft, case.strategy.collate(stored), steps=40, lr=1e-2)
    assert losses[-1] < 0.95 * losses[0], losses
