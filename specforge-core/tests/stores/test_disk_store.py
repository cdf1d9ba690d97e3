"""The ``disk`` store passes the store kit; plus atomic writes, byte accounting, sharding, reopening."""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors
import torch

from specforge.contracts import FeatureKey, FeatureRecord
from specforge.stores.disk import DiskStore
from specforge.stores.options import DiskStoreOptions
from specforge.testing.store_kit import StoreKit, assert_same_tensors, random_tensor


class TestDiskStoreKit(StoreKit):
    store_name = "disk"


def _store(tmp_path: Path, **options) -> DiskStore:
    return DiskStore(DiskStoreOptions(**options), root=tmp_path, namespace="f")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_crash_between_the_temp_write_and_the_rename_leaves_no_visible_record(tmp_path, monkeypatch):
    store = _store(tmp_path)

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.put(FeatureKey("f", "a"), {"x": torch.ones(3)})
    monkeypatch.undo()
    assert store.exists(FeatureKey("f", "a")) is False
    assert store.records() == []
    assert [p.name for p in _files(tmp_path / "f")] == ["store.json"]  # no temp file, no manifest line
    assert DiskStore.open_existing(tmp_path, "f").records() == []


def test_a_failed_sample_in_put_many_commits_none_of_the_batch(tmp_path):
    store = _store(tmp_path)
    store.put(FeatureKey("f", "b", 5), {"x": torch.ones(1)})
    with pytest.raises(ValueError, match="older than the stored generation 5"):
        store.put_many([(FeatureKey("f", "a"), {"x": torch.ones(2)}), (FeatureKey("f", "b", 4), {"x": torch.ones(2)})])
    assert [r.key.sample_id for r in store.records()] == ["b"]
    assert len(list((tmp_path / "f").rglob("*.safetensors"))) == 1


def test_on_disk_bytes_are_the_tensors_plus_safetensors_headers_plus_manifest(tmp_path):
    """Accounting: every sample file is 8 bytes (header length) + its JSON header + exactly the
    tensors' bytes, laid end to end; the store folder holds nothing but those files, the manifest
    and store.json."""
    store = _store(tmp_path)
    shapes = {"a": ((5, 7), torch.bfloat16), "b": ((5,), torch.int64), "c": ((), torch.float32),
              "d": ((0, 3), torch.float16)}
    data_bytes = 5 * 7 * 2 + 5 * 8 + 4 + 0  # by hand
    for i in range(3):
        tensors = {n: random_tensor(str(dt).removeprefix("torch."), shape, seed=i) for n, (shape, dt) in shapes.items()}
        store.put(FeatureKey("f", f"s{i}"), tensors)

    sample_files = sorted((tmp_path / "f").rglob("*.safetensors"))
    assert len(sample_files) == 3
    for path in sample_files:
        raw = path.read_bytes()
        (header_len,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + header_len])
        header.pop("__metadata__")
        spans = sorted(tuple(v["data_offsets"]) for v in header.values())
        assert spans[0][0] == 0 and spans[-1][1] == data_bytes
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no gaps, no padding
        assert len(raw) == 8 + header_len + data_bytes

    manifest = tmp_path / "f" / "manifest.jsonl"
    marker = tmp_path / "f" / "store.json"
    everything = _files(tmp_path / "f")
    assert set(everything) == {*sample_files, manifest, marker}
    total = sum(p.stat().st_size for p in everything)
    health = store.health()
    assert health.resident_bytes == 3 * data_bytes
    assert health.detail["disk_bytes"] == total
    assert health.detail["file_bytes"] == sum(p.stat().st_size for p in sample_files)


def test_files_are_plain_safetensors_with_the_key_in_their_metadata(tmp_path):
    store = _store(tmp_path)
    record = store.put(FeatureKey("f", "e0/3", 2), {"x": torch.arange(4, dtype=torch.int16)})
    (path,) = (tmp_path / "f").rglob("*.safetensors")
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"namespace": "f", "sample_id": "e0/3", "generation": "2", "store_dtype": "target"}
        assert torch.equal(f.get_tensor("x"), torch.arange(4, dtype=torch.int16))
    assert record.key.generation == 2


def test_samples_are_sharded_into_folders_of_shard_size(tmp_path):
    store = _store(tmp_path, shard_size=2)
    for i in range(5):
        store.put(FeatureKey("f", f"s{i}"), {"x": torch.full((2,), float(i))})
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in (tmp_path / "f").iterdir() if p.is_dir()}
    assert folders == {"000000": ["s0.g0.safetensors", "s1.g0.safetensors"],
                       "000001": ["s2.g0.safetensors", "s3.g0.safetensors"],
                       "000002": ["s4.g0.safetensors"]}


def test_a_new_generation_replaces_the_old_file_in_the_same_folder(tmp_path):
    store = _store(tmp_path, shard_size=2)
    for i in range(3):
        store.put(FeatureKey("f", f"s{i}"), {"x": torch.ones(1)})
    store.put(FeatureKey("f", "s0", 1), {"x": torch.zeros(1)})
    assert sorted(p.name for p in (tmp_path / "f" / "000000").iterdir()) == ["s0.g1.safetensors", "s1.g0.safetensors"]


def test_delete_removes_the_file_and_a_stale_delete_removes_nothing(tmp_path):
    store = _store(tmp_path)
    old = store.put(FeatureKey("f", "a", 0), {"x": torch.ones(2)})
    store.put(FeatureKey("f", "b", 0), {"x": torch.ones(2)})
    store.put(FeatureKey("f", "a", 1), {"x": torch.zeros(2)})
    store.delete(old)
    assert sorted(p.name for p in (tmp_path / "f").rglob("*.safetensors")) == ["a.g1.safetensors", "b.g0.safetensors"]
    store.delete(store.records()[1])
    assert [p.name for p in (tmp_path / "f").rglob("*.safetensors")] == ["a.g1.safetensors"]


def test_awkward_sample_ids_become_distinct_flat_file_names(tmp_path):
    store = _store(tmp_path)
    ids = ["a/b", "../up", "A", "a", "x" * 300, "e0/12:ünï cöde", ".hidden"]
    records = [store.put(FeatureKey("f", sid), {"i": torch.tensor(k)}) for k, sid in enumerate(ids)]
    files = list((tmp_path / "f").rglob("*.safetensors"))
    assert len({p.name.lower() for p in files}) == len(ids)  # distinct even on case-insensitive filesystems
    assert all(p.parent.parent == tmp_path / "f" and len(p.name) < 200 for p in files)
    for k, record in enumerate(records):
        assert store.get(record)["i"].item() == k


def test_a_delete_by_another_instance_is_seen_by_this_one(tmp_path):
    writer = _store(tmp_path)
    record = writer.put(FeatureKey("f", "a"), {"x": torch.ones(2)})
    writer.get(record)  # the writer's index now holds the record
    DiskStore.open_existing(tmp_path, "f").delete(record)
    assert writer.exists(record.key) is False
    with pytest.raises(KeyError, match="f/a/g0"):
        writer.get(record)
    assert writer.records() == []


def test_a_torn_manifest_line_from_a_crashed_writer_is_skipped(tmp_path):
    store = _store(tmp_path)
    first = store.put(FeatureKey("f", "a"), {"x": torch.ones(2)})
    with open(tmp_path / "f" / "manifest.jsonl", "ab") as f:
        f.write(b'{"op":"put","record":{"ke')  # a writer died mid-line
    later = DiskStore.open_existing(tmp_path, "f")
    second = later.put(FeatureKey("f", "b"), {"x": torch.zeros(2)})
    assert DiskStore.open_existing(tmp_path, "f").records() == [first, second]


def test_fsync_mode_round_trips(tmp_path):
    store = _store(tmp_path, fsync=True)
    x = random_tensor("bfloat16", (3, 3), seed=1)
    assert_same_tensors(store.get(store.put(FeatureKey("f", "a"), {"x": x})), {"x": x}, "fsync put")


def test_opening_needs_a_root_and_an_existing_store(tmp_path):
    with pytest.raises(ValueError, match="root directory"):
        DiskStore(namespace="f")
    with pytest.raises(FileNotFoundError, match="no disk store"):
        DiskStore.open_existing(tmp_path, "f")
    with pytest.raises(ValueError, match="namespace"):
        DiskStore(root=tmp_path, namespace="../escape")


def test_a_new_process_lists_the_same_records_in_the_same_order(tmp_path):
    store = _store(tmp_path, shard_size=3)
    for i in (4, 1, 3, 0, 2):
        store.put(FeatureKey("f", f"e0/{i}"), {"input_ids": torch.arange(i + 1), "h": torch.ones(i + 1, 2)})
    store.put(FeatureKey("f", "e0/3", 1), {"input_ids": torch.arange(9), "h": torch.zeros(9, 2)})
    store.delete(store.records()[1])
    code = ("import json, sys; from specforge.stores.disk import DiskStore; "
            "s = DiskStore.open_existing(sys.argv[1], 'f'); "
            "print(json.dumps([r.to_json() for r in s.records()]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    listed = [FeatureRecord.from_json(r) for r in json.loads(out.stdout)]
    assert [(r.key.sample_id, r.key.generation) for r in listed] == [("e0/4", 0), ("e0/3", 1), ("e0/0", 0),
                                                                        ("e0/2", 0)]
    assert listed == store.records()
