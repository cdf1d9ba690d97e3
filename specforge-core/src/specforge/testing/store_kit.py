"""Conformance kit for feature stores: what every store (built in or plugin) must do.

Use it from a plugin's tests by subclassing:

    from specforge.testing.store_kit import StoreKit

    class TestMyStore(StoreKit):
        store_name = "my-store"            # the registered name; descriptor()["store"] must say it

        def make_store(self, root, namespace):   # optional: the default builds it through the
            return MyStore(MyOptions(...), root=root, namespace=namespace)   # registry, default options

Every ``test_*`` method below then runs against a fresh store (the ``store`` fixture closes it).
The kit checks: bit-exact round trips of every supported dtype (0-d and empty tensors too),
KeyErrors that name the key, generations (a re-put never serves old bytes, an old record is
refused, a stale delete keeps the new one), ``names=`` subsets, copies (neither the caller's
input nor a returned tensor aliases what is stored), batch forms, concurrent threads, delete,
health, the registration's capabilities, and ``descriptor()``: JSON, reopened in this process,
and, when ``cross_process``, read and written from a ``python -c`` subprocess (a store that is
not cross-process must fail there instead of serving nothing silently).

Importing this module imports pytest and torch; ``specforge.testing`` itself imports neither.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from specforge.contracts import FeatureKey, FeatureRecord, FeatureStore, TensorSpec

KIT_DTYPES: dict[str, int] = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8,
    "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}
"""Every dtype a store must carry bit-exactly, with its element size (written out independently
of ``specforge.stores.dtypes`` so the kit does not trust the code it checks)."""

KIT_SHAPES: tuple[tuple[int, ...], ...] = ((3, 5), (), (0, 4), (2, 1, 3))
"""A matrix, a 0-d scalar, an empty tensor, and a 3-d tensor with a unit dimension."""


# --------------------------------------------------------------------------- tensors


def random_tensor(dtype: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A tensor of seeded random *bits*: float dtypes get NaN payloads, infinities, subnormals."""
    gen = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    raw = torch.randint(0, 256, (n * KIT_DTYPES[dtype],), dtype=torch.uint8, generator=gen)
    if dtype == "bool":
        return (raw % 2).to(torch.bool).reshape(shape)
    return raw.view(getattr(torch, dtype)).reshape(shape)


def tensor_bits(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor's elements in row-major order (NaN-safe equality)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).tolist())


def tensor_digest(t: torch.Tensor) -> str:
    """A checksum of dtype, shape and bits; what a subprocess reports about what it read."""
    head = f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}".encode()
    return hashlib.sha256(head + tensor_bits(t)).hexdigest()


def assert_same_tensor(actual: Any, expected: torch.Tensor, what: str) -> None:
    """Same dtype, shape and bits; the message says which differs."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{what}: got {type(actual).__name__}, expected a torch.Tensor")
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{what}: dtype {actual.dtype}, expected {expected.dtype}")
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if tensor_bits(actual) != tensor_bits(expected):
        raise AssertionError(f"{what}: bytes differ from what was put")


def assert_same_tensors(actual: Mapping[str, Any], expected: Mapping[str, torch.Tensor], what: str) -> None:
    if set(actual) != set(expected):
        raise AssertionError(f"{what}: names {sorted(actual)}, expected {sorted(expected)}")
    for name, tensor in expected.items():
        assert_same_tensor(actual[name], tensor, f"{what}[{name!r}]")


def kit_sample(seed: int, length: int = 6, hidden: int = 8) -> dict[str, torch.Tensor]:
    """A sample shaped like captured features: ids, mask, bf16 hidden states, fp32 last hidden."""
    return {
        "input_ids": random_tensor("int64", (length,), seed).abs() % 1000,
        "loss_mask": random_tensor("bool", (length,), seed + 1).to(torch.int64),
        "hidden_states": random_tensor("bfloat16", (length, 3 * hidden), seed + 2),  # [S, 3*H]
        "last_hidden": torch.randn(length, hidden, generator=torch.Generator().manual_seed(seed + 3)),
    }


KIT_SAMPLE_BYTES = 6 * 8 + 6 * 8 + 6 * 24 * 2 + 6 * 8 * 4
"""Tensor bytes of one ``kit_sample()`` (ids, mask, hidden states, last hidden), by hand."""


# --------------------------------------------------------------------------- cross-process child

_CHILD = r"""
import importlib, json, sys
import torch
from specforge.contracts import FeatureKey, FeatureRecord
from specforge.testing.store_kit import tensor_digest

args = json.loads(sys.argv[1])
module, _, attr = args["store_class"].partition(":")
store_class = getattr(importlib.import_module(module), attr)
out = {}
try:
    store = store_class.from_descriptor(args["descriptor"])
    got = store.get(FeatureRecord.from_json(args["record"]))
    out["read"] = {name: tensor_digest(t) for name, t in got.items()}
    written = store.put(FeatureKey(args["namespace"], "written-by-child", 3),
                       {"x": torch.arange(12, dtype=torch.int32).reshape(3, 4)})
    out["written"] = written.to_json()
    store.close()
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print("KIT-RESULT " + json.dumps(out))
"""


def run_in_subprocess(store: FeatureStore, record: FeatureRecord, namespace: str) -> dict:
    """Reopen ``store`` from its descriptor in a fresh interpreter, read ``record`` and put one
    sample; returns ``{"read": {name: digest}, "written": record json}`` or ``{"error": ...}``."""
    cls = type(store)
    args = {"store_class": f"{cls.__module__}:{cls.__qualname__}", "descriptor": store.descriptor(),
            "record": record.to_json(), "namespace": namespace}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=300, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("KIT-RESULT "):
            return json.loads(line.removeprefix("KIT-RESULT "))
    raise AssertionError(f"the subprocess crashed (exit {proc.returncode}) before reporting:\n"
                         f"{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------- the kit


class StoreKit:
    """Conformance tests for one FeatureStore; subclass it as ``TestSomething(StoreKit)``."""

    store_name: str = ""
    """The registered name of the store under test."""

    namespace: str = "kit"

    def make_store(self, root: Path, namespace: str) -> FeatureStore:
        """A fresh, empty store; by default the registered factory with default options."""
        from specforge.registry import get_registry

        if not self.store_name:
            raise NotImplementedError(f"{type(self).__name__}: set store_name or override make_store")
        spec = get_registry().get("feature_store", self.store_name).spec
        return spec.load()(spec.options(), root=root, namespace=namespace)

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FeatureStore]:
        store = self.make_store(tmp_path / "store", self.namespace)
        yield store
        store.close()

    def key(self, sample_id: str, generation: int = 0) -> FeatureKey:
        return FeatureKey(self.namespace, sample_id, generation)

    # ------------------------------------------------------------------ shape of the component

    def test_implements_the_feature_store_protocol(self, store):
        assert isinstance(store, FeatureStore)
        assert callable(store.put_many) and callable(store.get_many)
        assert isinstance(store.cross_process, bool) and isinstance(store.persistent, bool)

    def test_registration_names_this_class_with_its_capabilities(self, store):
        from specforge.registry import get_registry

        spec = get_registry().get("feature_store", store.descriptor()["store"]).spec
        assert isinstance(store, spec.load())
        assert (spec.cross_process, spec.persistent) == (store.cross_process, store.persistent)

    # ------------------------------------------------------------------ round trips

    @pytest.mark.parametrize("dtype", list(KIT_DTYPES))
    def test_every_dtype_round_trips_bit_exactly(self, store, dtype):
        tensors = {f"t{i}": random_tensor(dtype, shape, seed=i) for i, shape in enumerate(KIT_SHAPES)}
        record = store.put(self.key(f"dtype-{dtype}"), tensors)
        assert record.specs == {f"t{i}": TensorSpec(shape, dtype) for i, shape in enumerate(KIT_SHAPES)}
        assert_same_tensors(store.get(record), tensors, f"{dtype} round trip")

    def test_put_returns_the_key_and_specs_of_what_was_put(self, store):
        key = self.key("e0/00000007:x y")  # separators and spaces must be fine in a sample id
        record = store.put(key, kit_sample(1))
        assert record.key == key
        assert record.specs == {"input_ids": TensorSpec((6,), "int64"), "loss_mask": TensorSpec((6,), "int64"),
                                "hidden_states": TensorSpec((6, 24), "bfloat16"),
                                "last_hidden": TensorSpec((6, 8), "float32")}
        assert record.num_tokens == 6

    def test_a_record_passed_through_json_reads_the_same_features(self, store):
        tensors = kit_sample(2)
        record = store.put(self.key("json"), tensors)
        again = FeatureRecord.from_json(json.loads(json.dumps(record.to_json())))
        assert again == record
        assert_same_tensors(store.get(again), tensors, "get(record from JSON)")

    def test_noncontiguous_and_sliced_inputs_are_stored_as_their_values(self, store):
        base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
        tensors = {"transposed": base.transpose(0, 2), "slice": base[1, 1:3], "view": base[2]}
        record = store.put(self.key("views"), tensors)
        expected = {name: t.contiguous().clone() for name, t in tensors.items()}
        assert_same_tensors(store.get(record), expected, "views")

    # ------------------------------------------------------------------ missing and stale

    def test_missing_key_raises_a_keyerror_naming_the_sample(self, store):
        record = FeatureRecord(self.key("never-put-4711"), {"x": TensorSpec((2,), "float32")})
        with pytest.raises(KeyError, match="never-put-4711"):
            store.get(record)
        assert store.exists(record.key) is False

    def test_reput_with_a_new_generation_serves_only_the_new_bytes(self, store):
        old = store.put(self.key("s", 0), {"x": random_tensor("float32", (2, 3), seed=10)})
        new_x = random_tensor("bfloat16", (4,), seed=11)
        new = store.put(self.key("s", 1), {"x": new_x})
        assert_same_tensors(store.get(new), {"x": new_x}, "generation 1")
        with pytest.raises(KeyError, match="s"):
            store.get(old)
        assert store.exists(self.key("s", 0)) is False
        assert store.exists(self.key("s", 1)) is True

    def test_deleting_an_old_generation_keeps_the_new_one(self, store):
        old = store.put(self.key("s", 0), {"x": random_tensor("int32", (3,), seed=12)})
        new_x = random_tensor("int32", (3,), seed=13)
        new = store.put(self.key("s", 1), {"x": new_x})
        store.delete(old)
        assert store.exists(new.key)
        assert_same_tensors(store.get(new), {"x": new_x}, "after a stale delete")

    # ------------------------------------------------------------------ names and copies

    def test_names_selects_a_subset(self, store):
        tensors = kit_sample(3)
        record = store.put(self.key("subset"), tensors)
        got = store.get(record, names=["last_hidden", "input_ids"])
        assert_same_tensors(got, {n: tensors[n] for n in ("last_hidden", "input_ids")}, "names subset")

    def test_an_unknown_name_raises_a_keyerror_naming_it(self, store):
        record = store.put(self.key("subset"), kit_sample(4))
        with pytest.raises(KeyError, match="no_such_feature"):
            store.get(record, names=["input_ids", "no_such_feature"])

    def test_changing_the_input_after_put_does_not_change_the_store(self, store):
        x = random_tensor("float32", (4, 4), seed=20)
        expected = x.clone()
        record = store.put(self.key("mut-in"), {"x": x})
        x.fill_(7.0)
        assert_same_tensors(store.get(record), {"x": expected}, "after the caller changed its input")

    def test_writing_into_a_result_does_not_change_the_store(self, store):
        x = random_tensor("bfloat16", (4, 4), seed=21)
        record = store.put(self.key("mut-out"), {"x": x})
        store.get(record)["x"].fill_(3.0)
        assert_same_tensors(store.get(record), {"x": x}, "after a reader wrote into its result")

    # ------------------------------------------------------------------ batch forms

    def test_put_many_and_get_many_keep_order(self, store):
        samples = [kit_sample(30 + i) for i in range(4)]
        records = store.put_many([(self.key(f"b{i}"), s) for i, s in enumerate(samples)])
        assert [r.key.sample_id for r in records] == ["b0", "b1", "b2", "b3"]
        for i, got in enumerate(store.get_many(records)):
            assert_same_tensors(got, samples[i], f"get_many[{i}]")
        for i, got in enumerate(store.get_many(records[::-1], names=["input_ids"])):
            assert_same_tensors(got, {"input_ids": samples[3 - i]["input_ids"]}, f"get_many names [{i}]")

    # ------------------------------------------------------------------ concurrency

    def test_concurrent_readers_get_correct_data(self, store):
        samples = [kit_sample(40 + i) for i in range(8)]
        records = [store.put(self.key(f"c{i}"), s) for i, s in enumerate(samples)]
        order = [(t * 5 + k) % 8 for t in range(4) for k in range(24)]

        def read(chunk: list[int]) -> int:
            for i in chunk:
                assert_same_tensors(store.get(records[i]), samples[i], f"thread read of c{i}")
            return len(chunk)

        with ThreadPoolExecutor(max_workers=4) as pool:
            done = sum(pool.map(read, [order[t::4] for t in range(4)]))
        assert done == len(order)

    def test_concurrent_writers_of_distinct_samples_all_land(self, store):
        start = threading.Barrier(4)

        def write(t: int) -> list[FeatureRecord]:
            start.wait()
            return [store.put(self.key(f"w{t}-{k}"), {"x": random_tensor("float16", (3, 2), seed=100 * t + k)})
                    for k in range(5)]

        with ThreadPoolExecutor(max_workers=4) as pool:
            records = [r for rs in pool.map(write, range(4)) for r in rs]
        assert store.health().resident_samples == 20
        for record in records:
            t, k = (int(v) for v in record.key.sample_id[1:].split("-"))
            assert_same_tensors(store.get(record), {"x": random_tensor("float16", (3, 2), seed=100 * t + k)},
                                record.key.sample_id)

    # ------------------------------------------------------------------ delete and health

    def test_delete_frees_the_sample(self, store):
        record = store.put(self.key("gone"), kit_sample(50))
        store.delete(record)
        assert store.exists(record.key) is False
        with pytest.raises(KeyError, match="gone"):
            store.get(record)
        health = store.health()
        assert (health.resident_samples, health.resident_bytes) == (0, 0)

    def test_delete_is_idempotent(self, store):
        record = store.put(self.key("twice"), kit_sample(51))
        store.delete(record)
        store.delete(record)
        assert store.exists(record.key) is False

    def test_health_reports_resident_samples_and_bytes(self, store):
        assert store.health().ok is True
        assert (store.health().resident_samples, store.health().resident_bytes) == (0, 0)
        records = [store.put(self.key(f"h{i}"), kit_sample(60 + i)) for i in range(3)]
        full = store.health()
        assert full.resident_samples == 3
        assert full.resident_bytes >= 3 * KIT_SAMPLE_BYTES
        store.delete(records[0])
        less = store.health()
        assert less.resident_samples == 2
        assert less.resident_bytes < full.resident_bytes
        json.dumps(dict(less.detail))  # the detail is shown in progress lines and logs

    def test_an_unsupported_tensor_is_refused_and_nothing_is_stored(self, store):
        for bad in (torch.zeros(2, dtype=torch.complex64), [1.0, 2.0]):
            with pytest.raises(TypeError):
                store.put(self.key("bad"), {"ok": torch.zeros(2), "bad": bad})
        assert store.exists(self.key("bad")) is False
        assert store.health().resident_samples == 0

    # ------------------------------------------------------------------ descriptor

    def test_descriptor_is_json_naming_the_registered_store(self, store):
        descriptor = json.loads(json.dumps(store.descriptor()))
        assert descriptor["store"] == self.store_name

    def test_descriptor_reopens_the_same_store_in_this_process(self, store):
        tensors = kit_sample(70)
        record = store.put(self.key("reopen"), tensors)
        other = type(store).from_descriptor(json.loads(json.dumps(store.descriptor())))
        assert_same_tensors(other.get(record), tensors, "reopened in-process")
        second = other.put(self.key("from-other"), {"y": torch.arange(5)})
        assert_same_tensors(store.get(second), {"y": torch.arange(5)}, "written through the reopened store")
        if other is not store:
            other.close()

    def test_another_process_shares_the_store_exactly_when_cross_process(self, store):
        tensors = kit_sample(80)
        record = store.put(self.key("xproc"), tensors)
        result = run_in_subprocess(store, record, self.namespace)
        if not store.cross_process:
            assert "error" in result, f"a store that is not cross_process served another process: {result}"
            return
        assert "error" not in result, result.get("error")
        assert result["read"] == {name: tensor_digest(t) for name, t in tensors.items()}
        written = FeatureRecord.from_json(result["written"])
        assert_same_tensors(store.get(written), {"x": torch.arange(12, dtype=torch.int32).reshape(3, 4)},
                            "written by the subprocess")

    def test_closing_keeps_the_features_exactly_when_persistent(self, store):
        tensors = kit_sample(90)
        record = store.put(self.key("kept"), tensors)
        descriptor = store.descriptor()
        store.close()
        if store.persistent:
            reopened = type(store).from_descriptor(descriptor)
            assert_same_tensors(reopened.get(record), tensors, "after close and reopen")
            reopened.close()
        else:
            with pytest.raises((KeyError, ValueError, RuntimeError)):
                type(store).from_descriptor(descriptor).get(record)
