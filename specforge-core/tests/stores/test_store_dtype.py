"""store.dtype: floating features kept in 16 bits at rest, returned in the dtype they were put in."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from specforge.contracts import FeatureKey
from specforge.errors import ConfigError
from specforge.stores.disk import DiskStore
from specforge.stores.memory import MemoryStore
from specforge.stores.options import DiskStoreOptions, MemoryStoreOptions


def features(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(7, 12, generator=gen) * 3,  # [S, 3H] float32
            "input_ids": torch.randint(0, 150_000, (7,), generator=gen),  # [S] int64, above bf16's exact range
            "loss_mask": torch.ones(7, dtype=torch.int64)}


def stores(tmp_path, dtype: str):
    return [DiskStore(DiskStoreOptions(dtype=dtype), root=tmp_path / dtype),
            MemoryStore(MemoryStoreOptions(dtype=dtype))]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_floats_come_back_rounded_in_their_own_dtype_and_integers_exactly(tmp_path, dtype):
    put = features()
    for store in stores(tmp_path, dtype):
        record = store.put(FeatureKey("features", "s0"), put)
        got = store.get(record)
        assert got["hidden_states"].dtype == torch.float32
        assert torch.equal(got["hidden_states"], put["hidden_states"].to(getattr(torch, dtype)).float())
        assert not torch.equal(got["hidden_states"], put["hidden_states"]), "16 bits: rounded"
        assert torch.equal(got["input_ids"], put["input_ids"]) and torch.equal(got["loss_mask"], put["loss_mask"])
        assert record.specs["hidden_states"].dtype == "float32", "the record describes what get returns"


def test_the_store_holds_half_the_bytes_of_float32(tmp_path):
    full, half = stores(tmp_path, "target"), stores(tmp_path, "bfloat16")
    ints = 2 * 7 * 8
    for a, b in zip(full, half):
        a.put(FeatureKey("features", "s0"), features())
        b.put(FeatureKey("features", "s0"), features())
        assert a.health().resident_bytes == 7 * 12 * 4 + ints
        assert b.health().resident_bytes == 7 * 12 * 2 + ints


def test_the_disk_file_keeps_bfloat16_and_says_so(tmp_path):
    store = DiskStore(DiskStoreOptions(dtype="bfloat16"), root=tmp_path)
    store.put(FeatureKey("features", "s0"), features())
    (path,) = (tmp_path / "features").rglob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["store_dtype"] == "bfloat16"
        assert f.get_tensor("hidden_states").dtype == torch.bfloat16
        assert f.get_tensor("input_ids").dtype == torch.int64
    reopened = DiskStore.from_descriptor(store.descriptor())
    assert reopened.get(store.records()[0])["hidden_states"].dtype == torch.float32


def test_float16_refuses_values_it_would_turn_into_infinity(tmp_path):
    big = {**features(), "hidden_states": torch.full((7, 12), 1e5)}
    for store in stores(tmp_path, "float16"):
        with pytest.raises(ValueError, match=r"overflows float16.*bfloat16"):
            store.put(FeatureKey("features", "s0"), big)


def test_an_unknown_store_dtype_is_a_config_error():
    from specforge.options import build_options

    with pytest.raises(ConfigError, match=r"store\.dtype must be one of 'target', 'bfloat16', 'float16'"):
        build_options(DiskStoreOptions, {"dtype": "int8"}, "store")
