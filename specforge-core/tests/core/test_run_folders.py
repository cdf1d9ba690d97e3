"""A run folder is never clobbered: a second run is refused before it writes, unless asked to resume
or overwrite; a refused resume leaves the run's record as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("folders")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    chats = root / "chats.jsonl"
    chats.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} {i} {i}"}]}) + "\n"
        for i in range(8)))
    return root


def args(world: Path, out: Path, *extra: str, strategy: str = "example-medusa") -> list[str]:
    return ["run", "--strategy", strategy, "--target-model", str(world / "target"), "--data",
            str(world / "chats.jsonl"), "--output-dir", str(out), "--name", "r", "--set", "eval.enabled=false",
            "--set", "export.enabled=false", "--set", "training.max_steps=2", *extra]


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory) -> Path:
    """An output dir holding one finished 2-step run ``r``, trained once; each test takes a copy."""
    out = tmp_path_factory.mktemp("finished")
    run_specforge(*args(world, out))
    return out


def take(finished: Path, out: Path) -> None:
    shutil.copytree(finished, out, symlinks=True, dirs_exist_ok=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("nproc", ["1", "2"])
def test_a_fresh_run_into_a_folder_holding_a_run_is_refused_before_writing(world, finished, tmp_path, nproc):
    take(finished, tmp_path)
    before = snapshot(tmp_path)
    proc = run_specforge(*args(world, tmp_path, "--nproc-per-node", nproc), check=False)
    assert proc.returncode == 2
    assert "already holds a run; pass --resume to continue it, --overwrite to replace it" in proc.stderr
    assert snapshot(tmp_path) == before


def test_a_refused_resume_leaves_config_toml_as_it_was(world, finished, tmp_path):
    take(finished, tmp_path)
    record = (tmp_path / "r" / "config.toml").read_bytes()
    proc = run_specforge(*args(world, tmp_path, "--resume", "--set", "training.batch_size=2"), check=False)
    assert proc.returncode == 2 and "cannot resume" in proc.stderr and "batch_size" in proc.stderr
    assert (tmp_path / "r" / "config.toml").read_bytes() == record


def test_overwrite_moves_the_old_run_aside_and_starts_clean(world, finished, tmp_path):
    take(finished, tmp_path)
    old_metrics = (tmp_path / "r" / "metrics.jsonl").read_text()
    run_specforge(*args(world, tmp_path, "--overwrite", "--set", "training.max_steps=1"))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("r.replaced-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == old_metrics
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) == 1
    # the new run's only checkpoint is also its best (no eval during training: best = final)
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["best", "best.json", "step-00000001"]
    assert (tmp_path / "last").resolve() == (tmp_path / "r").resolve()


def test_resume_and_overwrite_together_are_refused(world, tmp_path):
    proc = run_specforge(*args(world, tmp_path, "--resume", "--overwrite"), check=False)
    assert proc.returncode == 2 and "use one" in proc.stderr
    assert not any(tmp_path.iterdir())
