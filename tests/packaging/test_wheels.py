"""Third parties ship plugins without editing the core: proven with real wheels in a fresh venv."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def build_wheel(project: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(project)], check=True, capture_output=True, text=True, timeout=300)
    name = project.name.replace("-", "_")
    return next(out.glob(f"{name}-*.whl"))


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory) -> Path:
    """A new venv holding only specforge-core and specforge-example wheels plus pluggy and click."""
    root = tmp_path_factory.mktemp("wheels")
    wheels = [build_wheel(REPO / "specforge-core", root), build_wheel(REPO / "tests/fixtures/specforge-example", root)]
    env = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", *map(str, wheels)], check=True, timeout=300)
    subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), "pluggy", "click"], check=True, timeout=300)
    return env


def test_the_fresh_env_has_no_torch(fresh_env):
    proc = subprocess.run([str(fresh_env / "bin" / "python"), "-c", "import torch"], capture_output=True, check=False)
    assert proc.returncode != 0


def test_plugins_lists_the_example_strategy_from_its_wheel(fresh_env):
    out = subprocess.run([str(fresh_env / "bin" / "specforge"), "plugins", "--json"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)}
    example = rows[("strategy", "example-medusa")]
    assert (example["distribution"], example["version"], example["status"]) == ("specforge-example", "0.1.0", "ok")
    assert rows[("topology", "offline")]["distribution"] == "specforge-core"


def test_plan_resolves_the_example_strategy_without_torch(fresh_env, tmp_path):
    from specforge.testing.tiny_models import write_plan_only_target

    target = write_plan_only_target(tmp_path / "target", {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": 8, "hidden_size": 64,
        "vocab_size": 300, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128})
    proc = subprocess.run([str(fresh_env / "bin" / "specforge"), "run", "--strategy", "example-medusa",
                           "--target-model", str(target), "--plan"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "example-medusa specforge-example 0.1.0" in proc.stdout
    assert "last_hidden [S, 64]" in proc.stdout
