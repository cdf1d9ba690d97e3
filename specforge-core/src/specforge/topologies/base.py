"""``TopologyBase``: the usual ``launch`` (torchrun for several processes, else this process)."""

from __future__ import annotations

from typing import Any

from specforge.contracts import Launcher, RunContext, TrainResult


class TopologyBase:
    """Subclass it and write ``train``; override ``launch`` only to place processes yourself."""

    def launch(self, launcher: Launcher) -> Any:
        return launcher.run_workers()

    def train(self, run: RunContext) -> TrainResult:
        raise NotImplementedError(f"{type(self).__name__} must implement train(run)")
