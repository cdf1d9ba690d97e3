"""What the ``mooncake`` store promises beyond the kit: raw bytes, leases, generations, ownership."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from specforge.contracts import FeatureKey, FeatureRecord, TensorSpec
from specforge.testing.store_kit import assert_same_tensors, kit_sample, random_tensor, tensor_bits
from specforge_mooncake.store import MooncakeStore

pytestmark = pytest.mark.mooncake


class RemoveSpy:
    """Wraps a real Mooncake client and records every ``batch_remove`` (force flag, codes)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.removes: list[tuple[bool, list[int]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def batch_remove(self, keys: list[str], force: bool = False) -> list[int]:
        codes = list(self.inner.batch_remove(keys, force))
        self.removes.append((force, codes))
        return codes


@pytest.fixture
def spy(owner: MooncakeStore) -> Any:
    inner = owner._client
    owner._client = spy = RemoveSpy(inner)
    yield spy
    owner._client = inner


# ---------------------------------------------------------------------- raw bytes


def test_each_tensor_is_one_object_of_exactly_its_raw_bytes(owner, raw):
    tensors = {"hidden_states": random_tensor("bfloat16", (5, 7), seed=1),  # [S, H]
               "input_ids": torch.arange(5, dtype=torch.int64), "flag": torch.tensor([True, False, True]),
               "scalar": torch.tensor(2.5, dtype=torch.float32)}
    record = owner.put(FeatureKey("t", "raw/one", 0), tensors)
    sizes = {"hidden_states": 5 * 7 * 2, "input_ids": 5 * 8, "flag": 3 * 1, "scalar": 4}  # numel x itemsize
    for name, tensor in tensors.items():
        key = f"t/raw%2Fone/g0/{name}"  # the documented layout, '/' in the sample id escaped
        assert raw.get_size(key) == sizes[name], f"{key}: a header or padding was stored"
        assert raw.get(key) == tensor_bits(tensor), f"{key} does not hold the tensor's raw bytes"
    assert json.loads(raw.get("t/raw%2Fone/g0")) == record.to_json()  # the record object, written last
    owner.delete(record)


def test_a_short_object_is_a_keyerror_never_wrong_bytes(owner, raw):
    record = owner.put(FeatureKey("t", "short", 0), {"x": torch.arange(8, dtype=torch.float32)})
    half = torch.arange(4, dtype=torch.float32)
    assert raw.upsert("t/short/g0/x", tensor_bits(half)) == 0  # someone rewrote it behind the store's back
    with pytest.raises(KeyError, match="read 16 bytes"):
        owner.get(record)
    owner.delete(record)


def test_the_same_sample_twice_in_one_get_many_reads_correct_bytes_twice(owner):
    tensors = kit_sample(5)
    record = owner.put(FeatureKey("t", "twice-in-batch", 0), tensors)
    first, second = owner.get_many([record, record])
    assert_same_tensors(first, tensors, "first copy")
    assert_same_tensors(second, tensors, "second copy")
    assert first["hidden_states"].data_ptr() != second["hidden_states"].data_ptr()
    owner.delete(record)


# ---------------------------------------------------------------------- leases


def test_delete_right_after_a_read_succeeds_although_the_read_holds_a_lease(owner, spy, raw):
    record = owner.put(FeatureKey("t", "leased", 0), kit_sample(1))
    owner.get(record)  # grants a read lease (500 ms on the session master)
    owner.delete(record)  # no -706 surfaces
    assert spy.removes[0][0] is False and -706 in spy.removes[0][1], "the first remove should meet the lease"
    assert spy.removes[-1] == (True, [0] * len(spy.removes[-1][1])), "then forced, once delete_wait_s passed"
    assert owner.exists(record.key) is False
    assert raw.is_exist("t/leased/g0/hidden_states") == 0
    with pytest.raises(KeyError, match="leased"):
        owner.get(record)


def test_delete_waits_out_a_lease_shorter_than_delete_wait_s_without_forcing(owner_options, owner):
    # A pure client that waits up to 3 s for read leases (the session master grants 500 ms).
    patient = MooncakeStore(owner_options(global_segment_size=0, delete_wait_s=3.0, preferred_segment=owner.segment),
                            namespace="t")
    patient._client = spy = RemoveSpy(patient._client)
    record = patient.put(FeatureKey("t", "patient", 0), {"x": torch.ones(3)})
    patient.get(record)
    patient.delete(record)
    assert spy.removes[0] == (False, [-706, -706]), "the read's lease blocks the first remove"
    assert all(force is False for force, _ in spy.removes), "a lease shorter than the wait is never forced"
    assert patient.exists(record.key) is False
    patient.close()


# ---------------------------------------------------------------------- generations


def test_reputting_the_same_generation_replaces_the_bytes(owner):
    # Mooncake's own put keeps the old bytes of an existing key; the store must not.
    key = FeatureKey("t", "same-gen", 0)
    owner.put(key, {"x": torch.zeros(4)})
    owner.get(owner.put(key, {"x": torch.zeros(4)}))  # a read lease on the object does not block the re-put
    record = owner.put(key, {"x": torch.full((4,), 7.0)})
    assert_same_tensors(owner.get(record), {"x": torch.full((4,), 7.0)}, "after a same-generation re-put")
    owner.delete(record)


def test_a_new_generation_removes_older_ones_written_by_another_client(owner, raw):
    other = MooncakeStore.attach(owner.descriptor())
    old = other.put(FeatureKey("t", "gen", 0), {"x": torch.zeros(2), "y": torch.ones(2)})
    other.get(old)  # leased: the removal still goes through
    other.put(FeatureKey("t", "gen", 1), {"x": torch.ones(3)})
    new = owner.put(FeatureKey("t", "gen", 2), {"x": torch.full((3,), 2.0)})
    for key in ("t/gen/g0", "t/gen/g0/x", "t/gen/g0/y", "t/gen/g1", "t/gen/g1/x"):
        assert raw.is_exist(key) == 0, f"{key} of an older generation is still stored"
    assert_same_tensors(owner.get(new), {"x": torch.full((3,), 2.0)}, "generation 2")
    with pytest.raises(KeyError, match="gen"):
        other.get(old)
    other.close()
    owner.delete(new)


def test_a_stale_writer_cannot_put_an_older_generation(owner):
    newer = owner.put(FeatureKey("t", "stale", 3), {"x": torch.ones(1)})
    with pytest.raises(ValueError, match="older than the stored generation 3"):
        owner.put(FeatureKey("t", "stale", 2), {"x": torch.zeros(1)})
    owner.delete(newer)


def test_a_reput_with_fewer_tensors_removes_the_ones_it_dropped(owner, raw):
    owner.put(FeatureKey("t", "fewer", 0), {"x": torch.ones(2), "y": torch.ones(2)})
    record = owner.put(FeatureKey("t", "fewer", 0), {"x": torch.zeros(2)})
    assert raw.is_exist("t/fewer/g0/y") == 0
    stale = FeatureRecord(record.key, {"y": TensorSpec((2,), "float32")})
    with pytest.raises(ValueError, match="re-put with other tensors"):
        owner.get(stale)
    owner.delete(record)


def test_health_uses_the_masters_health_check(owner):
    health = owner.health()
    assert health.ok is True and health.detail["health_check"] == 0
    assert health.detail["segment_owner"] is True and health.detail["master_address"] == owner.master_address


# ---------------------------------------------------------------------- ownership

_WRITER = r"""
import json, os, sys
from specforge.contracts import FeatureKey
from specforge.testing.store_kit import kit_sample
from specforge_mooncake.store import MooncakeStore

store = MooncakeStore.attach(json.loads(sys.argv[1]))
assert store.options.global_segment_size == 0
records = [store.put(FeatureKey("t", f"crash-{i}", 0), kit_sample(100 + i)).to_json() for i in range(8)]
print("RECORDS " + json.dumps(records), flush=True)
os._exit(0)  # gone without close(), as a crashed producer
"""


def test_a_pure_client_writers_objects_survive_its_exit_and_vanish_with_the_owner(owner_options):
    trainer = MooncakeStore(owner_options(), namespace="t")  # owns the memory
    bystander = MooncakeStore(owner_options(), namespace="t")  # another owner, closed below
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", _WRITER, json.dumps(trainer.descriptor())], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RECORDS "))
    records = [FeatureRecord.from_json(r) for r in json.loads(line.removeprefix("RECORDS "))]
    bystander.close()  # writes went to the descriptor writer's segment, so none vanish with this one
    for i, record in enumerate(records):
        assert_same_tensors(trainer.get(record), kit_sample(100 + i), f"{record.key.sample_id} after the writer died")
    descriptor = trainer.descriptor()
    trainer.close()
    reader = MooncakeStore.attach(descriptor)
    assert not any(reader.exists(r.key) for r in records), "objects outlived the segment owner"
    with pytest.raises(KeyError):
        reader.get(records[0])
    reader.close()
