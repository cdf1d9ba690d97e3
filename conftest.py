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
from typing import Any

import pytest

os.environ.setdefault("SPECFORGE_CACHE_DIR", str(Path(__file__).resolve().parent / ".cache" / "specforge"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The demo's test recipe: its target trains in half the steps (see specforge.demo.recipe), in a cache
# folder of its own; `make demo`, outside the tests, builds and measures the full one.
os.environ.setdefault("SPECFORGE_DEMO_RECIPE", "quick")
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


# ------------------------------------------------------------------ which worker runs what
# xdist's default ("load") hands out tests one by one, so a module fixture (a trained run several
# tests read, a built venv) is built once on EACH worker whose tests use it. Here a module's
# consecutive tests form one unit, run on one worker, so its module fixtures are built once; the
# demo runs of every strategy (independent, ~40 s each, put last by the collection) still go one by
# one, and a worker gets its next unit only when it is down to its last test, so both workers stay busy
# to the end. A module's tests that the collection moved to the end (its
# demo tests) form a unit of their own there. (xdist_group marks would do this per test, but have
# no effect under pytest 9.2.)
SPREAD = ("tests/e2e/test_demo_runs.py",)


def work_units(nodeids: list[str]) -> dict[str, str]:
    """Test id -> unit: runs of consecutive tests of one module; each test alone under ``SPREAD``."""
    units: dict[str, str] = {}
    previous, run = None, 0
    for nodeid in nodeids:
        module = nodeid.split("::", 1)[0]
        if module != previous:
            previous, run = module, run + 1
        units[nodeid] = nodeid if module in SPREAD else f"{module}#{run}"
    return units


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ModuleRuns(LoadScopeScheduling):
        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self._units: dict[str, str] = {}

        def schedule(self) -> None:
            if self.collection is None and self.registered_collections:
                self._units = work_units(list(next(iter(self.registered_collections.values()))))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return self._units.get(nodeid, nodeid)

        def _reschedule(self, node: Any) -> None:
            """The next unit only when the worker is down to its last test (which it runs once it
            knows the next). xdist tops a worker up at 2 pending tests, so at the end one worker
            held three queued demo runs (~50 s each) while the other had nothing left to do."""
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return ModuleRuns(config, log)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Wait for the background build (another worker may be waiting on it); stop it on Ctrl-C."""
    global _builder
    if _builder is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        _builder.terminate()
    _builder.wait()
    _builder = None
