"""Rebuild what a finished (or interrupted) run trained, from its folder: for `specforge export`/`eval`.

``locate`` says what the path is; this turns it into the run's config, its strategy, the frozen
target and the trained draft (built for the target, extra state and weights from the checkpoint).
A run that just trained never comes here: it finishes on the draft it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig, resolve
from specforge.contracts import DataStats, Strategy, TargetInfo
from specforge.errors import UserError
from specforge.run.folder import Located

EMPTY_STATS = DataStats(num_samples=0, num_tokens=0, num_loss_tokens=0, corpus_hash="")


def config_of(located: Located) -> RunConfig:
    """The run's resolved config: its config.toml, or for an export, the strategy and target it names."""
    from specforge.registry import get_registry

    if located.kind == "export":
        marker = located.marker or {}
        try:
            sets = [f"strategy.{k}={json.dumps(v)}" for k, v in marker["strategy_options"].items()]
            flags = {"strategy": marker["strategy"], "target_model": marker["target_model"]}
        except (KeyError, AttributeError):
            raise UserError(f"{located.path}/specforge_export.json lacks strategy, strategy_options or "
                            f"target_model; re-export the run") from None
        return resolve(get_registry(), flags=flags, sets=sets)
    if located.config_file is None or not located.config_file.is_file():
        raise UserError(f"{located.path} has no config.toml beside its checkpoint; pass the run folder")
    return resolve(get_registry(), config_file=located.config_file)


def trained_draft(strategy: Strategy, info: TargetInfo, checkpoint: Path) -> Any:
    """The draft as trained: built for ``info``, extra state and weights from ``checkpoint``."""
    import torch

    from specforge.training.trainer import build_draft

    return build_draft(strategy, info, EMPTY_STATS, device=torch.device("cpu"), warm_start=checkpoint).eval()


@dataclass(frozen=True)
class Rebuilt:
    config: RunConfig
    strategy: Strategy
    info: TargetInfo
    draft: Any
    checkpoint: Path | None


def rebuild(located: Located, *, info: TargetInfo | None = None, dtype: str | None = None) -> Rebuilt:
    """The run's trained draft (its newest checkpoint), or an export's draft, for ``info``."""
    from specforge.engines.frozen import frozen_target_info

    config = config_of(located)
    strategy = config.strategy.build()
    if info is None:
        info = frozen_target_info(config.target.model, dtype or config.target.dtype)
    if located.kind == "export":
        return Rebuilt(config, strategy, info, strategy.load_export(located.path, info).eval(), None)
    checkpoint = located.require_checkpoint("nothing was trained yet")
    return Rebuilt(config, strategy, info, trained_draft(strategy, info, checkpoint), checkpoint)
