"""Stored features are reused only when everything that decided their bytes is the same.

Each change a user can make between two runs over one store (the feature request, the data
file's content under the same name, the target's weights, max_length, the engine's dtype) makes
the second capture re-capture exactly the affected samples and say what changed; a read-only
store refuses, naming it. Real tiny target, real HF engine, real disk and memory stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.capture import NAMESPACE, FeatureIdentity, capture_into_store, changed_parts
from specforge.contracts import FeatureRequest
from specforge.errors import UserError
from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("identity")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    make_tiny_target(root / "retrained", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=1)
    return root


def write_chats(path: Path, answer: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "messages": [
        {"role": "user", "content": f"repeat {i}"}, {"role": "assistant", "content": f"{i} {answer}"}]}) + "\n"
        for i in range(4)))
    return path


def capture(world: Path, store, *, target: str = "target", layers=(1, 2), answer: str = "twice",
            max_length: int = 512, dtype: str = "float32", read_only: bool = False):
    from specforge.data import load_samples
    from specforge.engines.hf import HFEngine
    from specforge.engines.target_identity import target_identity

    data = write_chats(world / "chats.jsonl", answer)
    request = FeatureRequest(layers=tuple(layers), last_hidden=True)
    with HFEngine(model_path=str(world / target), dtype=dtype, device="cpu") as engine:
        samples = load_samples(data, engine.info().tokenizer, max_length=max_length).samples
        identity = FeatureIdentity.of(target=target_identity(world / target), engine="hf", engine_options={},
                                      target_dtype=dtype, request=request)
        return capture_into_store(engine, samples, request, store, identity=identity, batch_size=8,
                                  progress=False, read_only=read_only)


def disk(tmp_path: Path):
    from specforge.stores.disk import DiskStore

    return DiskStore(root=tmp_path, namespace=NAMESPACE)


def memory(tmp_path: Path):
    from specforge.stores.memory import MemoryStore

    return MemoryStore(namespace=NAMESPACE)


CHANGES = {  # what changes between the two captures -> the part the summary names
    "request": ({"layers": (1, 3)}, "request"),
    "data": ({"answer": "thrice"}, "sample"),
    "target": ({"target": "retrained"}, "target"),
    "max_length": ({"max_length": None}, "sample"),  # None: one token shorter than the shortest sample
    "dtype": ({"dtype": "float64"}, "engine"),
}


@pytest.mark.parametrize("make_store", [disk, memory], ids=["disk", "memory"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_input_recaptures_and_names_what_changed(world, tmp_path, make_store, change):
    store = make_store(tmp_path)
    first = capture(world, store)
    assert (first.captured, first.reused) == (4, 0)
    assert (capture(world, store).captured, capture(world, store).reused) == (0, 4)  # same inputs: reused
    kwargs, part = CHANGES[change]
    if change == "max_length":
        kwargs = {"max_length": min(r.num_tokens for r in first.records.values()) - 1}
    second = capture(world, store, **kwargs)
    expected = 4
    assert second.recaptured == second.captured == expected > 0
    assert second.changed[part] == expected
    assert any("changed for" in line for line in second.lines())
    renewed = [r for k, r in second.records.items() if r.key != first.records[k].key]
    assert len(renewed) == expected
    assert all(r.key.generation == 1 and store.exists(r.key) for r in renewed)  # a newer generation, stored


def test_a_read_only_store_refuses_stale_features_naming_what_changed(world, tmp_path):
    from specforge.stores.disk import DiskStore
    from specforge.stores.options import DiskStoreOptions

    capture(world, disk(tmp_path))
    frozen = DiskStore(DiskStoreOptions(read_only=True), root=tmp_path, namespace=NAMESPACE)
    assert capture(world, frozen, read_only=True).reused == 4
    with pytest.raises(UserError, match=r"4 sample\(s\) with another target model"):
        capture(world, frozen, target="retrained", read_only=True)


def test_fingerprint_parts_are_compared_one_by_one():
    old = "target=a;engine=b;request=c;dtype=target;sample=d"
    assert changed_parts(old, old.replace("request=c", "request=x")) == ["request"]
    assert changed_parts("", old) == ["target", "engine", "request", "dtype", "sample"]


def test_a_run_sharing_a_store_recaptures_after_the_feature_request_changed(world, tmp_path):
    """The CLI path: two runs over one `store.root`, the second with other EAGLE3 layer ids."""
    data = write_chats(tmp_path / "chats.jsonl", "twice")
    common = ("run", "--strategy", "eagle3", "--target-model", str(world / "target"), "--data", str(data),
              "--output-dir", str(tmp_path / "runs"), "--set", f'store.root="{tmp_path / "shared"}"',
              "--set", "eval.enabled=false", "--set", "export.enabled=false", "--set", "training.max_steps=1",
              "--set", "training.batch_size=4")  # the one step reads all 4 samples
    run_specforge(*common, "--name", "a", "--set", "strategy.aux_layer_ids=[0,1,2]")
    again = run_specforge(*common, "--name", "b", "--set", "strategy.aux_layer_ids=[0,1,2]")
    assert "(0 captured, 4 already in the store)" in again.stderr
    changed = run_specforge(*common, "--name", "c", "--set", "strategy.aux_layer_ids=[1,2,3]")
    assert "(4 captured, 0 already in the store)" in changed.stderr
    assert "feature request (layers) changed for 4" in changed.stderr
