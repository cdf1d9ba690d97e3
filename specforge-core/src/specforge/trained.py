"""Reopen a finished (or interrupted) run: its config, its newest checkpoint, its trained draft.

Used after training, by `specforge export` and by `specforge eval`; the draft is rebuilt from
the target's own frozen weights plus the checkpoint, so no trainer or process group is needed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.config import RunConfig, resolve
from specforge.contracts import DataStats, Strategy, TargetInfo
from specforge.errors import ConfigError

EXPORT_MARKER = "specforge_export.json"  # written into every export: which strategy, which options


@dataclass(frozen=True)
class RunFiles:
    run_dir: Path
    checkpoint: Path
    config: RunConfig


def open_run(path: str | Path) -> RunFiles:
    """A run folder (newest checkpoint) or a checkpoint folder, with its resolved config."""
    from specforge.registry import get_registry
    from specforge.training.checkpoint import find_latest

    p = Path(path)
    if (p / "state.pt").is_file():
        ckpt, run_dir = p, p.parent.parent
    elif (p / "config.toml").is_file():
        run_dir, ckpt = p, find_latest(p / "checkpoints")
        if ckpt is None:
            raise ConfigError(f"run {str(p)!r} has no complete checkpoint yet; train it first")
    else:
        raise ConfigError(f"{str(p)!r} is neither a run folder (with config.toml) nor a checkpoint folder")
    config_file = ckpt / "config.toml" if (ckpt / "config.toml").is_file() else run_dir / "config.toml"
    config = resolve(get_registry(), config_file=config_file)
    return RunFiles(run_dir=run_dir, checkpoint=ckpt, config=config)


def frozen_target_info(model_path: str, dtype: str = "float32") -> TargetInfo:
    """TargetInfo with frozen embedding/lm_head read from safetensors, without loading the model."""
    import torch

    from specforge.engines.target_config import target_info_from_config
    from specforge.engines.weights import read_frozen_weights

    info = target_info_from_config(model_path)
    embed, head = read_frozen_weights(model_path, info.config)
    dt = getattr(torch, dtype)
    tied = head is embed
    embed = embed.to(dt)
    return dataclasses.replace(info, embed_weight=embed, lm_head_weight=embed if tied else head.to(dt))


EMPTY_STATS = DataStats(num_samples=0, num_tokens=0, num_loss_tokens=0, corpus_hash="")


def trained_draft(strategy: Strategy, info: TargetInfo, checkpoint: Path) -> Any:
    """The draft as trained: built for ``info``, extra state and weights from ``checkpoint``."""
    import torch

    from specforge.training.trainer import build_draft

    return build_draft(strategy, info, EMPTY_STATS, device=torch.device("cpu"), warm_start=checkpoint).eval()


def write_export_marker(out_dir: Path, config: RunConfig, fmt: str) -> None:
    marker = {"strategy": config.run.strategy, "strategy_options": config.sections()["strategy"],
              "target_model": config.target.model, "format": fmt}
    (out_dir / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
