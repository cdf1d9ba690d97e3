"""Nothing SpecForge starts listens beyond loopback by default: a two-process run (its process
group's store and gloo) and a disaggregated run (control plane, producers, trainers), every
process sampled while the run goes on."""

from __future__ import annotations

import json

import pytest

from specforge.testing.cli import run_specforge
from specforge.testing.sockets import SocketSampler, describe


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("loopback")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    (root / "chats.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} {i}"}]}) + "\n"
        for i in range(8)))
    return root


@pytest.mark.parametrize("layout", [("--nproc-per-node", "2"), ("--topology", "disaggregated")],
                         ids=["two-processes", "disaggregated"])
def test_a_run_listens_only_on_loopback(world, tmp_path, layout):
    with SocketSampler() as sampler:
        run_specforge("run", "--strategy", "example-medusa", "--target-model", str(world / "target"),
                      "--data", str(world / "chats.jsonl"), "--output-dir", str(tmp_path), *layout,
                      "--set", "training.max_steps=2", "--set", "eval.enabled=false", "--set", "export.enabled=false")
    new = sampler.new()
    assert new, "the sampler saw no listener of the run at all"  # a store, gloo pairs, a control plane
    exposed = [s for s in new if not s.loopback]
    assert not exposed, f"listening beyond loopback: {describe(exposed)}"
