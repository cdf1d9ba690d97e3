"""A scaffolded strategy installs, is listed at once, fails its kit until filled in, then passes.

The package is installed editable into this venv (as a plugin author would) under a unique
name, and removed afterwards. Registry and kit run in subprocesses so the fresh entry point
is seen the way a new `specforge` or `pytest` process sees it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from specforge.scaffold.render import render_strategy

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]

# What an author writes into the two marked sections (a one-head Medusa-style draft).
MODEL = '''\
class {prefix}Draft(nn.Module):
    def __init__(self, info: TargetInfo, options: {prefix}Options) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(info.hidden_size, info.hidden_size)
                                    for _ in range(options.hidden_layers))
        for block in self.blocks:
            nn.init.zeros_(block.weight)
            nn.init.zeros_(block.bias)
        self.register_buffer("lm_head_weight", info.lm_head_weight.detach().clone(), persistent=False)

    def forward(self, last_hidden: torch.Tensor) -> torch.Tensor:
        h = last_hidden  # [B, S, H]
        for block in self.blocks:
            h = h + torch.nn.functional.silu(block(h))
        return torch.nn.functional.linear(h, self.lm_head_weight)  # [B, S, V]
'''
LOSS = '''\
        logits = draft(batch["last_hidden"])  # [B, S, V]
        labels = batch["input_ids"][:, 2:]
        weight = batch["loss_mask"][:, 2:].float()
        ce = torch.nn.functional.cross_entropy(logits[:, :-2].flatten(0, 1), labels.flatten(),
                                               reduction="none")
        return LossOutput(terms=((ce * weight.flatten()).sum(), weight.sum()))
'''


def _fill(text: str, section: str, code: str) -> str:
    pattern = re.compile(rf"^[ \t]*# ---- TODO\(author\): {section}\b.*?# ---- end TODO\(author\): {section}[^\n]*\n",
                         re.S | re.M)
    filled, count = pattern.subn(lambda _: code, text)
    assert count == 1, f"the {section} section is not marked exactly once"
    return filled


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def installed_scaffold(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"kitprobe-{uuid.uuid4().hex[:8]}"
    dest = tmp_path / f"specforge-{name}"
    render_strategy(name, dest)
    done = _run([*PIP, "install", "--no-deps", "-e", str(dest)])
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield name, dest
    finally:
        _run([*PIP, "uninstall", "-y", f"specforge-{name}"])


def test_scaffold_is_listed_fails_its_kit_until_filled_and_then_passes(installed_scaffold: tuple[str, Path]) -> None:
    name, dest = installed_scaffold

    listing = _run([sys.executable, "-c",
                    "import json, sys; from specforge.registry import load_registry; "
                    "reg = load_registry().get('strategy', sys.argv[1]); "
                    "print(json.dumps([reg.plugin.distribution, reg.plugin.version]))", name])
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == [f"specforge-{name}", "0.1.0"]

    kit = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    unfilled = _run(kit, cwd=dest)
    assert unfilled.returncode == 1, unfilled.stdout + unfilled.stderr
    assert "NotImplementedError: TODO(author)" in unfilled.stdout
    assert re.search(r"\b\d+ failed\b", unfilled.stdout), unfilled.stdout

    model = dest / "src" / f"specforge_{name.replace('-', '_')}" / "model.py"
    prefix = "".join(p.capitalize() for p in name.split("-"))
    text = _fill(model.read_text(), "model", MODEL.format(prefix=prefix))
    model.write_text(_fill(text, "loss", textwrap.indent(textwrap.dedent(LOSS), "    ")))

    filled = _run(kit, cwd=dest)
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert re.search(r"\b12 passed\b", filled.stdout), filled.stdout
