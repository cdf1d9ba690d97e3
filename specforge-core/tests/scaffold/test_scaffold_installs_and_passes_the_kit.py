"""A scaffolded strategy installs, is listed incomplete and refused until its TODOs are done, then is
listed ok, planned, and passes its kit and reference tests.

The package is installed the way a user installs a wheel, but into a folder of its own
(``pip install --no-deps --target``), never into this environment, which parallel tests share.
Registry, CLI and kit run in subprocesses with that folder on PYTHONPATH, so the entry point is
found the way a new `specforge` or `pytest` process finds an installed one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

from specforge.scaffold.render import render_strategy

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
SPECFORGE = [sys.executable, "-m", "specforge"]
KIT = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]


def _run(args: list[str], site: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _install(package: Path, site: Path) -> Path:
    done = _run([*PIP, "install", "--no-deps", "--no-build-isolation", "--target", str(site), str(package)])
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def _status(name: str, site: Path) -> str:
    listing = _run([*SPECFORGE, "plugins", "--kind", "strategy"], site)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if f" {name} " in line)
    assert f"specforge-{name}  0.1.0" in row, row
    return row


def test_scaffold_is_incomplete_and_refused_until_its_todos_are_done_then_ok_and_passes(tmp_path: Path) -> None:
    name = f"kitprobe-{uuid.uuid4().hex[:8]}"
    dest = tmp_path / f"specforge-{name}"
    render_strategy(name, dest)
    package = f"specforge_{name.replace('-', '_')}"
    site = _install(dest, tmp_path / "site-unfilled")

    assert f"incomplete: TODO(author) sections left in {package}/model.py: model, loss, decoding" in _status(name, site)
    plan = _run([*SPECFORGE, "run", "--strategy", name, "--plan"], site)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert plan.stderr.strip().splitlines() == [
        f"error: strategy {name!r} from specforge-{name} is incomplete: TODO(author) sections left in "
        f"{package}/model.py: model, loss, decoding (make the method yours, then delete their marker lines)"]
    unfilled = _run([*KIT, "-k", "registered"], site, cwd=dest)
    assert unfilled.returncode == 1, unfilled.stdout + unfilled.stderr
    assert f"strategy {name!r} is registered incomplete" in unfilled.stdout
    assert re.search(r"\b1 failed\b", unfilled.stdout), unfilled.stdout

    # The author makes the method theirs (here: keeps it) and deletes the marker lines.
    model = dest / "src" / package / "model.py"
    model.write_text("".join(line for line in model.read_text().splitlines(keepends=True)
                             if "TODO(author)" not in line))
    site = _install(dest, tmp_path / "site-filled")

    assert re.search(r"\bok\b", _status(name, site).split(f"specforge-{name}  0.1.0", 1)[1])
    plan = _run([*SPECFORGE, "run", "--strategy", name, "--plan"], site)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert re.search(rf"^  strategy\s+{name}\s+specforge-{name} 0\.1\.0$", plan.stdout, re.M)
    assert "export         format hf (strategy" in plan.stdout
    filled = _run(KIT, site, cwd=dest)
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert re.search(r"\b18 passed\b", filled.stdout), filled.stdout
