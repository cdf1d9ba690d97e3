"""Exports and checkpoints are readable like any model folder: the mode the umask gives new files
(0644 under the usual 022), never the 0600 of a temporary file, so a serving engine running as
another user can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from specforge.api.export import new_file_mode, save_safetensors
from specforge.testing.cli import run_specforge


@contextmanager
def umask(mask: int) -> Iterator[None]:
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and of everything under it (symlinks themselves skipped)."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root.parent)): stat.S_IMODE(p.lstat().st_mode) for p in paths if not p.is_symlink()}


def test_a_runs_export_and_checkpoints_are_0644_files_in_0755_folders_under_umask_022(
        specforge_tiny_target, specforge_chats, tmp_path):
    with umask(0o022):
        run_specforge("run", "--strategy", "example-medusa", "--target-model", str(specforge_tiny_target),
                      "--data", str(specforge_chats), "--output-dir", str(tmp_path), "--name", "r",
                      "--set", "training.max_steps=2", "--set", "training.batch_size=2",
                      "--set", "eval.enabled=false")
    run_dir = tmp_path / "r"
    export, checkpoints = modes(run_dir / "export"), modes(run_dir / "checkpoints")
    assert "export/model.safetensors" in export
    assert any(name.endswith(".safetensors") for name in checkpoints if name.startswith("checkpoints/step-"))
    wrong = {name: oct(mode) for name, mode in {**export, **checkpoints}.items()
             if mode != (0o755 if (run_dir / name).is_dir() else 0o644)}
    assert not wrong, wrong


def test_saved_safetensors_follow_the_umask_not_a_fixed_mode(tmp_path):
    with umask(0o027):
        assert new_file_mode() == 0o640
        path = save_safetensors({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with umask(0o022):
        path = save_safetensors({"w": torch.zeros(2)}, tmp_path / "b.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
