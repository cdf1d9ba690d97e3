"""Stale features never reach training through a Mooncake store.

Mooncake cannot list what it holds, so the core never reuses a Mooncake sample across captures:
every capture writes the run's features again (the same generation's bytes are replaced). These
tests make each change a user can make between two captures into one live pool (feature request,
data content under the same sample ids, target weights, max_length, engine dtype) and check that
what the store then returns is the new capture's bytes, compared with the engine's own capture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specforge.capture import NAMESPACE, FeatureIdentity, capture_into_store
from specforge.contracts import FeatureRequest
from specforge_mooncake.store import MooncakeStore

pytestmark = pytest.mark.mooncake


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
            max_length: int = 512, dtype: str = "float32"):
    """Capture into ``store``; returns the summary and the engine's own features of the same samples."""
    from specforge.data import load_samples
    from specforge.engines.hf import HFEngine
    from specforge.engines.target_identity import target_identity

    data = write_chats(world / f"chats-{answer}.jsonl", answer)
    request = FeatureRequest(layers=tuple(layers), last_hidden=True)
    with HFEngine(model_path=str(world / target), dtype=dtype, device="cpu") as engine:
        samples = load_samples(data, engine.info().tokenizer, max_length=max_length).samples
        identity = FeatureIdentity.of(target=target_identity(world / target), engine="hf", engine_options={},
                                      target_dtype=dtype, request=request)
        summary = capture_into_store(engine, samples, request, store, identity=identity, batch_size=8,
                                     progress=False)
        expected = dict(zip((s.sample_id for s in samples), engine.capture(samples, request)))
    return summary, expected


CHANGES = {
    "request": {"layers": (1, 3)},
    "data": {"answer": "thrice"},
    "target": {"target": "retrained"},
    "max_length": {},  # one token shorter than the shortest sample (below)
    "dtype": {"dtype": "float64"},
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_after_a_change_the_pool_returns_the_new_features(world, owner_options, change):
    store = MooncakeStore(owner_options(), namespace=NAMESPACE)
    try:
        first, _ = capture(world, store)
        assert first.captured == 4
        kwargs = CHANGES[change]
        if change == "max_length":
            kwargs = {"max_length": min(r.num_tokens for r in first.records.values()) - 1}
        second, expected = capture(world, store, **kwargs)
        assert second.reused == 0, "a store that cannot list is never trusted to hold this run's features"
        for sample_id, record in second.records.items():
            got = store.get(record)
            want = expected[sample_id]
            for name in ("hidden_states", "last_hidden", "input_ids", "loss_mask"):
                assert got[name].dtype == want[name].dtype and torch.equal(got[name], want[name]), \
                    (change, sample_id, name)
    finally:
        store.close()
