"""Test settings for every package of this repository (`make test` runs them all).

Shared assets are built once per session into one cache (CI: one per run); tiny models on a
shared 2-core machine run with one thread (more only contend: 10-100x slower forwards).
Fixtures for tests (and for plugin authors) come from the ``specforge`` pytest plugin.
No test run logs to Weights & Biases: specforge-wandb is installed for its own (offline) tests,
and a developer's ``WANDB_PROJECT`` would otherwise send every test run there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPECFORGE_CACHE_DIR", str(Path(__file__).resolve().parent / ".cache" / "specforge"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("WANDB_PROJECT", None)

# ------------------------------------------------------------------ the demo build, in the background
# Tests marked ``demo`` (or using a ``demo_assets`` fixture) need the real demo build (minutes on one
# core). They run last, and one process starts the build as soon as collection is done, so the
# build overlaps every other test instead of holding a worker idle on the build lock.
_builder: subprocess.Popen | None = None


def _needs_demo(item: pytest.Item) -> bool:
    return item.get_closest_marker("demo") is not None or "demo_assets" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: no build for a run that selected no demo test
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    demo = [item for item in items if _needs_demo(item)]
    if not demo:
        return
    # The long (slow) ones first among them, so that the quick ones fill the end of both workers.
    # A stable sort: the same order in every xdist worker (the controller checks it).
    demo.sort(key=lambda item: item.get_closest_marker("slow") is None)
    items[:] = [item for item in items if not _needs_demo(item)] + demo
    if not config.option.collectonly and os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0":
        _start_demo_build()


def _start_demo_build() -> None:
    """``specforge demo build`` in a child process, unless a complete build is already cached."""
    global _builder
    from specforge.demo.assets import MANIFEST, demo_root

    root = demo_root()
    if (root / MANIFEST).is_file():
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    log = (root.parent / f"{root.name}.build.log").open("w")
    # Its lock (specforge.demo.cache.build_once) makes a test that asks first wait for this build.
    _builder = subprocess.Popen([sys.executable, "-m", "specforge", "demo", "build", "--quiet"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Wait for the background build (another worker may be waiting on it); stop it on Ctrl-C."""
    global _builder
    if _builder is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        _builder.terminate()
    _builder.wait()
    _builder = None
