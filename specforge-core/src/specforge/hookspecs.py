"""Every hook a plugin can implement, grouped by what it extends.

Registration hooks receive a ``register`` callback so the core checks names, duplicates and
API versions in one place. Observer hooks run on rank 0 only; an exception in one fails the
run and names the plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
import pluggy

from specforge.components import FeatureStoreSpec, StrategySpec, TargetEngineSpec, TopologySpec
from specforge.contracts import RunContext, TrainResult

PROJECT = "specforge"
hookspec = pluggy.HookspecMarker(PROJECT)


# ----------------------------------------------------------------- components


@hookspec
def specforge_register_strategies(register: Callable[[StrategySpec], None]) -> None:
    """Register draft algorithms: ``register(StrategySpec(name=..., factory="mod:Class", ...))``."""


@hookspec
def specforge_register_target_engines(register: Callable[[TargetEngineSpec], None]) -> None:
    """Register sources of target features (``hf`` is built in)."""


@hookspec
def specforge_register_feature_stores(register: Callable[[FeatureStoreSpec], None]) -> None:
    """Register feature stores (``memory`` and ``disk`` are built in)."""


@hookspec
def specforge_register_topologies(register: Callable[[TopologySpec], None]) -> None:
    """Register process layouts (``offline``, ``online``, ``disaggregated`` are built in)."""


# ----------------------------------------------------------------- command line


@hookspec
def specforge_register_commands(cli: click.Group) -> None:
    """Add verbs to the ``specforge`` command (e.g. ``specforge mooncake master``)."""


# ----------------------------------------------------------------- export


@hookspec
def specforge_check_export(strategy: str, fmt: str, export_dir: Path, info: dict) -> list[str] | None:
    """Problems a serving engine would have with an export; any problem fails ``specforge export``.

    ``info`` is what the strategy's ``export`` returned (architecture, weight shapes, ...).
    Return a list of human-readable problems, or None/[] when the export looks right.
    """


# ----------------------------------------------------------------- run observers (rank 0 only)


@hookspec
def specforge_on_run_start(run: RunContext) -> None:
    """A run is about to train; ``run`` is the assembled run (``run.config``, ``run.run_dir``, ...)."""


@hookspec
def specforge_on_step_end(run: RunContext, step: int, metrics: dict[str, float]) -> None:
    """An optimizer step finished; ``metrics`` is the line written to metrics.jsonl."""


@hookspec
def specforge_on_checkpoint(run: RunContext, path: Path) -> None:
    """A checkpoint was written (atomically) at ``path``."""


@hookspec
def specforge_on_run_end(run: RunContext, result: TrainResult) -> None:
    """Training finished; ``result`` holds the steps, the last loss and the final checkpoint."""


@hookspec
def specforge_on_run_finished(run: RunContext, report: dict | None, export_dir: Path | None) -> None:
    """The run's export and final evaluation are written (after ``on_run_end``; not when either failed).

    ``report`` is what ``eval.json`` holds (``report["after"]["tau"]``, ``["before"]``, ...), None
    with ``eval.enabled = false``; ``export_dir`` is the export, None with ``export.enabled = false``.
    """

REGISTRATION_HOOKS: dict[str, str] = {
    "strategy": "specforge_register_strategies",
    "target_engine": "specforge_register_target_engines",
    "feature_store": "specforge_register_feature_stores",
    "topology": "specforge_register_topologies",
}
OBSERVER_HOOKS = ("specforge_on_run_start", "specforge_on_step_end", "specforge_on_checkpoint", "specforge_on_run_end",
                  "specforge_on_run_finished")
