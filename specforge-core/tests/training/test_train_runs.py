"""`specforge run` trains for real on CPU: offline and online, 1 and 2 gloo processes (DDP, FSDP2), exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.cli import run_specforge as specforge

STEPS = 12  # 24 conversations, batch 2 -> 12 steps per epoch on 1 process, 1 epoch


@pytest.fixture(scope="module")
def tiny_target(specforge_tiny_target):
    """The specforge pytest plugin's tiny Qwen3 target (shorter name for this module)."""
    return specforge_tiny_target


@pytest.fixture(scope="module")
def chats(specforge_chats):
    """The specforge pytest plugin's 24 conversations."""
    return specforge_chats


@pytest.fixture(scope="module")
def whole(tiny_target, chats, tmp_path_factory) -> Path:
    """One uninterrupted 1-process run (12 steps, a checkpoint every 2) that several tests read."""
    out = tmp_path_factory.mktemp("whole-1")
    specforge(*train_args(tiny_target, chats, out, "whole"))
    return out / "whole"


@pytest.fixture(scope="module")
def whole_two_ranks(tiny_target, chats, tmp_path_factory) -> Path:
    """The same, on 2 gloo processes (6 steps)."""
    out = tmp_path_factory.mktemp("whole-2")
    specforge(*train_args(tiny_target, chats, out, "whole", "--nproc-per-node", "2"))
    return out / "whole"


def copy_run(run_dir: Path, out: Path, name: str) -> None:
    """A test's own copy of a shared run, which it may resume (and so change)."""
    shutil.copytree(run_dir, out / name, symlinks=True)


def train_args(target: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(target), "--data", str(data),
            "--output-dir", str(out), "--name", name, "--set", "eval.enabled=false", "--set", "export.enabled=false",
            "--set", "training.batch_size=2", "--set", "training.lr=0.03", "--set", "training.warmup_ratio=0.0",
            "--set", "training.save_every=2", "--set", "training.keep_checkpoints=20", *extra]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_state(run_dir: Path, step: int, ranks: int = 1) -> dict:
    ckpt = run_dir / "checkpoints" / f"step-{step:08d}"
    state = torch.load(ckpt / "state.pt", weights_only=True)
    return {"weights": load_file(str(ckpt / "draft.safetensors")), "optimizer": state["optimizer"],
            "rng": [torch.load(ckpt / f"rng-rank{r}.pt", weights_only=True) for r in range(ranks)],
            "lr": metrics(run_dir)[-1]["lr"], "position": (state["step"], state["epoch"], state["micro"])}


def assert_same_state(a: dict, b: dict) -> None:
    assert a["position"] == b["position"]
    assert a["lr"] == b["lr"]
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    for name in opt_a:
        for k, v in opt_a[name].items():
            assert torch.equal(v, opt_b[name][k]), (name, k)
    for ra, rb in zip(a["rng"], b["rng"]):
        assert torch.equal(ra["torch"], rb["torch"])
        assert ra["python"] == rb["python"]


@pytest.mark.parametrize("topology", ["offline", "online"])
def test_a_run_trains_its_loss_falls_and_leaves_metrics_and_checkpoints(tiny_target, chats, tmp_path, topology):
    specforge(*train_args(tiny_target, chats, tmp_path, "r", "--topology", topology, "--set", "training.epochs=2"))
    run_dir = tmp_path / "r"
    lines = metrics(run_dir)
    assert [x["step"] for x in lines] == list(range(1, 2 * STEPS + 1))
    assert {"step", "loss", "lr", "tokens_per_s"} <= lines[0].keys()
    first, last = sum(x["loss"] for x in lines[:3]) / 3, sum(x["loss"] for x in lines[-3:]) / 3
    assert last < 0.8 * first, (first, last)
    assert (run_dir / "checkpoints" / f"step-{2 * STEPS:08d}" / "draft.safetensors").is_file()
    assert (run_dir / "config.toml").is_file()
    assert (tmp_path / "last").resolve() == run_dir.resolve()
    if topology == "offline":
        assert any((run_dir / "features").rglob("*.safetensors")), "offline captures into the disk store"


@pytest.mark.parametrize("kill_at", ["step:5", "ckpt-write:4"])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_state(tiny_target, chats, tmp_path, kill_at, whole):
    killed = specforge(*train_args(tiny_target, chats, tmp_path, "cut"), env={"SPECFORGE_TEST_KILL_AT": kill_at},
                       check=False)
    assert killed.returncode == -9, killed.stderr
    cut = tmp_path / "cut"
    if kill_at.startswith("ckpt-write"):
        assert (cut / "checkpoints" / ".tmp-step-00000004").is_dir(), "the half-written checkpoint stays hidden"
        assert not (cut / "checkpoints" / "step-00000004").exists()
    specforge(*train_args(tiny_target, chats, tmp_path, "cut", "--resume"))
    assert_same_state(final_state(whole, STEPS), final_state(cut, STEPS))
    assert [x["step"] for x in metrics(cut)] == list(range(1, STEPS + 1)), "each step logged once"


def test_resume_refuses_a_changed_batch_size(tiny_target, chats, tmp_path, whole):
    copy_run(whole, tmp_path, "r")
    proc = specforge(*train_args(tiny_target, chats, tmp_path, "r", "--resume", "--set", "training.batch_size=3"),
                     check=False)
    assert proc.returncode == 2
    assert "cannot resume" in proc.stderr and "batch_size: checkpoint 2, now 3" in proc.stderr


def test_init_draft_warm_starts_weights_but_not_the_optimizer(tiny_target, chats, tmp_path, whole):
    specforge(*train_args(tiny_target, chats, tmp_path, "warm", "--init-draft", str(whole),
                          "--set", "training.max_steps=1"))
    base_loss = metrics(whole)[0]["loss"]
    warm_loss = metrics(tmp_path / "warm")[0]["loss"]
    assert warm_loss < base_loss, "the warm start begins where the first run ended, not from scratch"
    state = torch.load(tmp_path / "warm" / "checkpoints" / "step-00000001" / "state.pt", weights_only=True)
    steps = {int(v["step"]) for v in state["optimizer"]["state"].values()}
    assert steps == {1}, "a fresh optimizer: one step taken"


TWO_RANK_STEPS = 6  # 24 conversations, batch 2 x 2 ranks -> 6 steps per epoch


@pytest.mark.parametrize(("topology", "parallel"), [("offline", "ddp"), ("online", "ddp"), ("offline", "fsdp")])
def test_two_processes_train_with_equal_batches(tiny_target, chats, tmp_path, topology, parallel):
    specforge(*train_args(tiny_target, chats, tmp_path, "r", "--topology", topology, "--nproc-per-node", "2",
                          "--set", f'training.parallel="{parallel}"', "--set", "training.epochs=2"))
    lines = metrics(tmp_path / "r")
    assert [x["step"] for x in lines] == list(range(1, 2 * TWO_RANK_STEPS + 1))
    first, last = sum(x["loss"] for x in lines[:3]) / 3, sum(x["loss"] for x in lines[-3:]) / 3
    assert last < 0.85 * first, (first, last)
    assert (tmp_path / "r" / "checkpoints" / f"step-{2 * TWO_RANK_STEPS:08d}" / "rng-rank1.pt").is_file()


@pytest.mark.parametrize("kill_at", ["step:3", "ckpt-write:4"])
def test_a_killed_two_rank_run_resumes_exactly(tiny_target, chats, tmp_path, kill_at, whole_two_ranks):
    two = ("--nproc-per-node", "2")
    killed = specforge(*train_args(tiny_target, chats, tmp_path, "cut", *two),
                       env={"SPECFORGE_TEST_KILL_AT": kill_at}, check=False)
    assert killed.returncode != 0
    specforge(*train_args(tiny_target, chats, tmp_path, "cut", *two, "--resume"))
    assert_same_state(final_state(whole_two_ranks, TWO_RANK_STEPS, ranks=2),
                      final_state(tmp_path / "cut", TWO_RANK_STEPS, ranks=2))


def test_resume_refuses_a_changed_world_size(tiny_target, chats, tmp_path, whole_two_ranks):
    copy_run(whole_two_ranks, tmp_path, "r")
    proc = specforge(*train_args(tiny_target, chats, tmp_path, "r", "--resume"), check=False)
    assert proc.returncode == 2
    assert "world_size: checkpoint 2, now 1" in proc.stderr
