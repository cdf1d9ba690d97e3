"""Built wheels of the core and the strategy plugins, installed with -c constraints.txt in a fresh
venv (torch included), train for real: the way a user installs and runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ["specforge-core", "plugins/specforge-eagle3", "plugins/specforge-dflash", "plugins/specforge-domino",
            "plugins/specforge-peagle", "plugins/specforge-dspark"]


@pytest.fixture(scope="module")
def trained_env(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("strategy-wheels")
    for project in PACKAGES:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(root), str(REPO / project)], check=True, capture_output=True, timeout=300)
    wheels = sorted(str(p) for p in root.glob("*.whl"))
    assert len(wheels) == len(PACKAGES)
    env = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    # The core's [train] extra brings torch; the constraints keep it the CPU build on disk.
    # --no-compile: pip's one-file-at-a-time bytecode for all of torch costs ~55 s here; this venv's
    # runs below write the bytecode they import (their env has no PYTHONDONTWRITEBYTECODE).
    extra = next(w for w in wheels if "specforge_core" in w) + "[train]"
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-compile", "-c", str(REPO / "constraints.txt"), extra, *wheels], check=True, timeout=900)
    return env


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("tiny")
    make_tiny_target(root / "target", num_layers=8, hidden=32, heads=2, kv_heads=1, seed=0, mask_token="<|mask|>")
    data = root / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"count from {i}"},
        {"role": "assistant", "content": " ".join(str(i + j) for j in range(12))}]}) + "\n" for i in range(8)))
    return root / "target", data


STRATEGIES = ["eagle3", "domino", "peagle", "dspark"]


def train(env: Path, target: Path, data: Path, out: Path, strategy: str) -> str | None:
    """Train ``strategy`` from the venv's own ``specforge``; what is wrong with the run, or None."""
    proc = subprocess.run([str(env / "bin" / "specforge"), "run", "--strategy", strategy, "--target-model",
                           str(target), "--data", str(data), "--output-dir", str(out), "--name", "r",
                           "--set", "training.batch_size=2", "--set", "eval.num_prompts=2",
                           "--set", "eval.max_new_tokens=8", "--set", "data.eval_holdout=2"],
                          capture_output=True, text=True, timeout=900, check=False,
                          env={"PATH": str(env / "bin"), "OMP_NUM_THREADS": "1", "HOME": str(out)})
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    if f"(strategy {strategy}, k=4)" not in proc.stdout:
        return f"no τ line for k=4 in: {proc.stdout[-1000:]}"
    if not (out / "r" / "export" / "model.safetensors").is_file():
        return "no export/model.safetensors"
    steps = len((out / "r" / "metrics.jsonl").read_text().splitlines())
    if steps != 3:  # 8 conversations, 2 held out for evaluation, batches of 2: 3 steps
        return f"{steps} metrics lines, 3 expected"
    return None


def test_wheels_in_a_fresh_venv_train_every_strategy(trained_env, tiny, tmp_path):
    """One test for the four strategies: the venv takes ~100 s to build, and xdist would build it once
    per worker for parametrized tests (its grouping has no effect under pytest 9.2)."""
    target, data = tiny
    problems = {s: train(trained_env, target, data, tmp_path / s, s) for s in STRATEGIES}
    failed = {s: p for s, p in problems.items() if p is not None}
    assert not failed, "\n".join(f"{s}: {p}" for s, p in failed.items())
