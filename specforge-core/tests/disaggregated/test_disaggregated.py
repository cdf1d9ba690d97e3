"""Producers and trainers in separate processes: equal to offline, bounded, and fault tolerant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.cli import run_specforge

STEPS = 12  # 24 conversations, batch 2, 1 trainer


@pytest.fixture(scope="module")
def tiny_target(specforge_tiny_target):
    """The specforge pytest plugin's tiny Qwen3 target (shorter name for this module)."""
    return specforge_tiny_target


@pytest.fixture(scope="module")
def chats(specforge_chats):
    """The specforge pytest plugin's 24 conversations."""
    return specforge_chats


def args(target: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(target), "--data", str(data),
            "--output-dir", str(out), "--name", name, "--set", "eval.enabled=false", "--set", "export.enabled=false",
            "--set", "training.batch_size=2", "--set", "training.lr=0.03", "--set", "training.warmup_ratio=0.0",
            "--set", "training.save_every=2", "--set", "training.keep_checkpoints=20", *extra]


def disagg(*extra: str) -> tuple[str, ...]:
    return ("--topology", "disaggregated", "--set", "topology.max_inflight=4", *extra)


def weights(run_dir: Path, step: int) -> dict:
    return load_file(str(run_dir / "checkpoints" / f"step-{step:08d}" / "draft.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def trained_samples(run_dir: Path) -> list[str]:
    out = []
    for path in sorted(run_dir.glob("trained-rank*.jsonl")):
        out += [s for line in path.read_text().splitlines() for s in json.loads(line)["samples"]]
    return out


def test_disaggregated_trains_exactly_like_offline_within_the_inflight_bound(tiny_target, chats, tmp_path):
    run_specforge(*args(tiny_target, chats, tmp_path, "offline"))
    run_specforge(*args(tiny_target, chats, tmp_path, "split", *disagg()))
    split = tmp_path / "split"
    assert_same_weights(weights(tmp_path / "offline", STEPS), weights(split, STEPS))
    samples = trained_samples(split)
    assert len(samples) == len(set(samples)) == 24, "every planned sample trained exactly once"
    produced = [json.loads(x) for x in (split / "producer-0.jsonl").read_text().splitlines()]
    assert len(produced) == 24
    assert max(p["inflight"] for p in produced) <= 4, "backpressure: never more than max_inflight unacknowledged"
    lines = [json.loads(x) for x in (split / "metrics.jsonl").read_text().splitlines()]
    assert {"data_wait_s", "trainer_samples_per_s"} <= lines[-1].keys()
    assert not list((split / "features").rglob("*.safetensors")), "acknowledged samples are deleted"


def test_a_killed_producer_is_restarted_and_no_sample_is_lost_or_trained_twice(tiny_target, chats, tmp_path):
    run_specforge(*args(tiny_target, chats, tmp_path, "whole", *disagg()))
    run_specforge(*args(tiny_target, chats, tmp_path, "cut", *disagg("--set", "topology.producer_restarts=1")),
                  env={"SPECFORGE_TEST_KILL_AT": "produce:5"})
    samples = trained_samples(tmp_path / "cut")
    assert len(samples) == len(set(samples)) == 24
    assert_same_weights(weights(tmp_path / "whole", STEPS), weights(tmp_path / "cut", STEPS))


def test_a_killed_trainer_resumes_consistently_with_what_was_acknowledged(tiny_target, chats, tmp_path):
    run_specforge(*args(tiny_target, chats, tmp_path, "whole", *disagg()))
    killed = run_specforge(*args(tiny_target, chats, tmp_path, "cut", *disagg()),
                           env={"SPECFORGE_TEST_KILL_AT": "step:5"}, check=False)
    assert killed.returncode != 0
    run_specforge(*args(tiny_target, chats, tmp_path, "cut", *disagg(), "--resume"))
    assert_same_weights(weights(tmp_path / "whole", STEPS), weights(tmp_path / "cut", STEPS))


def test_a_failing_producer_stops_the_trainers_with_its_error(tiny_target, chats, tmp_path):
    proc = run_specforge(*args(tiny_target, chats, tmp_path, "r", *disagg()),
                         env={"SPECFORGE_TEST_KILL_AT": "produce:3"}, check=False, timeout=300)
    assert proc.returncode != 0
    assert "a producer failed: producer 0 exited with code -9" in proc.stderr


def test_two_trainers_and_two_producers_each_rank_gets_equal_samples(tiny_target, chats, tmp_path):
    run_specforge(*args(tiny_target, chats, tmp_path, "r", "--nproc-per-node", "2",
                        *disagg("--set", "topology.num_producers=2")))
    run_dir = tmp_path / "r"
    per_rank = [len(p.read_text().splitlines()) for p in sorted(run_dir.glob("trained-rank*.jsonl"))]
    assert per_rank == [6, 6]
    samples = trained_samples(run_dir)
    assert len(samples) == len(set(samples)) == 24


def test_memory_store_is_rejected_for_disaggregated():
    proc = run_specforge("run", "--strategy", "example-medusa", "--topology", "disaggregated", "--store", "memory",
                         "--plan", check=False)
    assert proc.returncode == 2
    assert "needs a store that is cross_process" in proc.stderr and "--store disk" in proc.stderr
