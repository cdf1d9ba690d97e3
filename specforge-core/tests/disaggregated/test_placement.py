"""Disaggregated processes each get their own device; producers capture in batches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from specforge.errors import ConfigError
from specforge.testing.cli import run_specforge
from specforge.topologies.placement import place, visible_devices


def test_without_accelerators_every_process_runs_on_the_cpu():
    placement = place(2, 3, 0)
    assert placement.producers == ("cpu", "cpu") and placement.trainers == ("cpu",) * 3


def test_producers_take_the_first_accelerators_and_trainers_the_next():
    placement = place(2, 4, 8)
    assert placement.producers == ("cuda:0", "cuda:1")
    assert placement.trainers == ("cuda:2", "cuda:3", "cuda:4", "cuda:5")


def test_too_few_accelerators_is_refused_unless_sharing_is_asked_for():
    with pytest.raises(ConfigError, match=r"need 3 accelerators, this machine has 2; to share devices"):
        place(1, 2, 2)
    shared = place(1, 2, 2, producer_devices=("cuda:0",), trainer_devices=("cuda:0", "cuda:1"))
    assert shared.producers == ("cuda:0",) and shared.trainers == ("cuda:0", "cuda:1")


def test_explicit_producer_devices_are_kept_out_of_the_trainers_share():
    placement = place(1, 2, 4, producer_devices=("cuda:3",))
    assert placement.producers == ("cuda:3",) and placement.trainers == ("cuda:0", "cuda:1")


def test_each_process_sees_only_its_own_gpus():
    assert visible_devices(("cuda:2", "cuda:3")) == {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert visible_devices(("cpu",)) == {}


def test_plan_prints_the_placement_under_a_simulated_accelerator_count(tmp_path):
    proc = run_specforge("run", "--strategy", "example-medusa", "--topology", "disaggregated", "--nproc-per-node", "2",
                         "--set", "topology.num_producers=2", "--plan",
                         env={"SPECFORGE_SIMULATE_ACCELERATORS": "4"}, cwd=tmp_path)
    lines = [line.split(None, 1)[1] for line in proc.stdout.splitlines() if line.strip().startswith("processes")]
    assert lines == ["producer 0 -> cuda:0", "producer 1 -> cuda:1", "trainer rank 0 -> cuda:2",
                     "trainer rank 1 -> cuda:3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("placement")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    (root / "chats.jsonl").write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} {i} {i}"}]}) + "\n"
        for i in range(16)))
    return root


def test_producers_capture_in_batches_on_the_device_they_were_given(world: Path, tmp_path):
    run_specforge("run", "--strategy", "example-medusa", "--target-model", str(world / "target"), "--data",
                  str(world / "chats.jsonl"), "--output-dir", str(tmp_path), "--name", "r", "--topology",
                  "disaggregated", "--set", "training.capture_batch_size=4", "--set", "topology.max_inflight=8",
                  "--set", "training.batch_size=2", "--set", "eval.enabled=false", "--set", "export.enabled=false",
                  env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"})
    rows = [json.loads(x) for x in (tmp_path / "r" / "producer-0.jsonl").read_text().splitlines()]
    assert len(rows) == 16  # every planned sample once
    assert max(r["batch"] for r in rows) == 4  # the engine saw real batches
    assert {r["device"] for r in rows} == {"cpu"}
