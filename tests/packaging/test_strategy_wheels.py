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

# One worker builds the module's venv once (under xdist each worker would build its own).
pytestmark = pytest.mark.xdist_group("strategy-wheels")


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
    extra = next(w for w in wheels if "specforge_core" in w) + "[train]"
    subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-c", str(REPO / "constraints.txt"), extra, *wheels], check=True, timeout=900)
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


@pytest.mark.parametrize("strategy", ["eagle3", "domino", "peagle", "dspark"])
def test_wheels_in_a_fresh_venv_train_a_strategy(trained_env, tiny, tmp_path, strategy):
    target, data = tiny
    proc = subprocess.run([str(trained_env / "bin" / "specforge"), "run", "--strategy", strategy, "--target-model",
                           str(target), "--data", str(data), "--output-dir", str(tmp_path), "--name", "r",
                           "--set", "training.batch_size=2", "--set", "eval.num_prompts=2",
                           "--set", "eval.max_new_tokens=8", "--set", "data.eval_holdout=2"],
                          capture_output=True, text=True, timeout=900,
                          check=False,
                          env={"PATH": str(trained_env / "bin"), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"(strategy {strategy}, k=4)" in proc.stdout
    assert (tmp_path / "r" / "export" / "model.safetensors").is_file()
    # 8 conversations, 2 held out for evaluation, batches of 2: 3 steps
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 3
