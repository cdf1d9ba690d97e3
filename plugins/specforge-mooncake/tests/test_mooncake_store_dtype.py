"""store.dtype for Mooncake: floating tensors travel and rest in 16 bits, get returns the captured dtype."""

from __future__ import annotations

import pytest
import torch

from specforge.contracts import FeatureKey
from specforge_mooncake.store import MooncakeStore

pytestmark = pytest.mark.mooncake


@pytest.fixture(scope="module")
def half(owner_options):
    store = MooncakeStore(owner_options(dtype="bfloat16"), namespace="half")
    yield store
    store.close()


def test_bfloat16_objects_are_half_the_bytes_and_come_back_as_float32(half, raw):
    hidden = torch.randn(6, 10) * 3  # [S, H] float32
    ids = torch.arange(150_000, 150_006)  # int64 beyond bf16's exact integers
    record = half.put(FeatureKey("half", "s0"), {"hidden_states": hidden, "input_ids": ids})
    assert raw.get_size("half/s0/g0/hidden_states~bfloat16") == 6 * 10 * 2
    assert raw.get_size("half/s0/g0/input_ids") == 6 * 8, "integers are moved exactly, under their own key"
    got = half.get(record)
    assert got["hidden_states"].dtype == torch.float32
    assert torch.equal(got["hidden_states"], hidden.to(torch.bfloat16).float())
    assert torch.equal(got["input_ids"], ids)
    assert half.health().resident_bytes == 6 * 10 * 2 + 6 * 8
    half.delete(record)
    assert raw.get_size("half/s0/g0/hidden_states~bfloat16") < 0, "delete removes the dtype-named object"


def test_a_reader_with_another_dtype_finds_nothing_rather_than_misreading(half, owner_options):
    record = half.put(FeatureKey("half", "s1"), {"hidden_states": torch.randn(4, 4)})
    other = MooncakeStore(owner_options(dtype="float16", global_segment_size=0), namespace="half")
    try:
        with pytest.raises(KeyError):
            other.get(record)
    finally:
        other.close()
        half.delete(record)
