"""τ while training: `training.eval_every` writes eval/* metrics, every rank evaluates its share,
`checkpoints/best` follows the best τ through rotation and resume, and evaluating changes nothing
about the training itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.cli import run_specforge as specforge

STEPS = 10  # 24 conversations less 4 held out for evaluation, batch 2, one process
EVAL = ("--set", "data.eval_holdout=4", "--set", "eval.num_prompts=4", "--set", "eval.max_new_tokens=8",
        "--set", "eval.k=3")


def args(target: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(target), "--data", str(data),
            "--output-dir", str(out), "--name", name, "--set", "export.enabled=false",
            "--set", "training.batch_size=2", "--set", "training.lr=0.03", "--set", "training.warmup_ratio=0.0",
            *EVAL, *extra]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def best_of(run_dir: Path) -> tuple[str, dict]:
    root = run_dir / "checkpoints"
    assert (root / "best").is_symlink(), "checkpoints/best links to a step folder"
    return os.readlink(root / "best"), json.loads((root / "best.json").read_text())


def test_eval_every_writes_tau_and_keeps_the_best_checkpoint_through_rotation(
        specforge_tiny_target, specforge_chats, tmp_path):
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--set", "training.eval_every=4",
                    "--set", "training.keep_checkpoints=1"))
    run_dir = tmp_path / "r"
    lines = metrics(run_dir)
    evaluated = [x for x in lines if "eval/tau" in x]
    assert [x["step"] for x in evaluated] == [4, 8, 10]
    for x in evaluated:
        assert 1.0 <= x["eval/tau"] <= 4.0
        assert {"eval/accept_pos1", "eval/accept_pos2", "eval/accept_pos3"} <= x.keys()
    assert all("eval/tau" not in x for x in lines if x["step"] % 4 and x["step"] != STEPS), "and at the last step"
    best_step = max(evaluated, key=lambda x: (x["eval/tau"], -x["step"]))["step"]
    link, record = best_of(run_dir)
    assert link == f"step-{best_step:08d}" and record["step"] == best_step
    assert record["tau"] == pytest.approx(max(x["eval/tau"] for x in evaluated))
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert kept == sorted({f"step-{best_step:08d}", f"step-{STEPS:08d}"}), "rotation keeps the newest and best"
    assert (run_dir / "checkpoints" / "best" / "draft.safetensors").is_file()
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["after"]["tau"] == pytest.approx(evaluated[-1]["eval/tau"]), \
        "the last in-training evaluation decodes the same prompts with the same draft as the final one"


def test_without_eval_every_best_is_the_final_checkpoint(specforge_tiny_target, specforge_chats, tmp_path):
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--set", "eval.enabled=false",
                    "--set", "training.max_steps=3"))
    assert best_of(tmp_path / "r") == ("step-00000003", {"step": 3, "tau": None, "chosen": "final"})
    assert all("eval/tau" not in x for x in metrics(tmp_path / "r"))


def test_a_killed_run_with_evaluation_resumes_exactly_and_keeps_its_best(specforge_tiny_target, specforge_chats,
                                                                       tmp_path):
    common = ("--set", "training.eval_every=3", "--set", "training.save_every=2",
              "--set", "training.keep_checkpoints=1", "--set", "eval.enabled=true")
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "whole", *common))
    killed = specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "cut", *common),
                       env={"SPECFORGE_TEST_KILL_AT": "step:7"}, check=False)
    assert killed.returncode == -9, killed.stderr
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "cut", *common, "--resume"))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    final = f"checkpoints/step-{STEPS:08d}/draft.safetensors"
    a, b = load_file(str(whole / final)), load_file(str(cut / final))
    assert all(torch.equal(a[k], b[k]) for k in a), "evaluating during training does not change training"
    assert [x["step"] for x in metrics(cut)] == list(range(1, STEPS + 1))
    assert [x["step"] for x in metrics(cut) if "eval/tau" in x] == [3, 6, 9, 10]
    assert best_of(cut) == best_of(whole), "the resumed run picks the same best as the uninterrupted one"
    assert (cut / "checkpoints" / "best" / "state.pt").is_file()


def test_two_ranks_share_the_evaluation_and_agree_with_the_final_one(specforge_tiny_target, specforge_chats,
                                                                    tmp_path):
    specforge(*args(specforge_tiny_target, specforge_chats, tmp_path, "r", "--nproc-per-node", "2",
                    "--set", 'training.parallel="fsdp"', "--set", "training.eval_every=3"))
    lines = metrics(tmp_path / "r")
    evaluated = [x for x in lines if "eval/tau" in x]
    assert [x["step"] for x in evaluated] == [3, 5]
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert report["after"]["tau"] == pytest.approx(evaluated[-1]["eval/tau"]), \
        "two ranks' shares, summed, give the τ rank 0 measures alone on every prompt"
    assert report["after"]["per_position_acceptance"] == pytest.approx(
        [evaluated[-1][f"eval/accept_pos{i + 1}"] for i in range(len(report["after"]["per_position_acceptance"]))])
