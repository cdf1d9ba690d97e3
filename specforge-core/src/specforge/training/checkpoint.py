"""Checkpoints written atomically and resumed exactly.

Layout: ``checkpoints/step-00000012/`` with ``draft.safetensors`` (trainable parameters and
persistent buffers; frozen target weights are rebuilt from the target), ``state.pt`` (optimizer,
schedule position, data position, the strategy's extra state, the resume contract),
``rng-rank{r}.pt`` per rank, and ``config.toml``. Everything is written into a ``.tmp-*``
folder that is renamed into place last, so a half-written checkpoint is never picked up.
Tensors load with ``weights_only=True``; weights are safetensors (no pickle on the weight path).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from specforge.errors import ConfigError, UserError
from specforge.export import save_safetensors
from specforge.faults import kill_point
from specforge.training.best import best_step_dir
from specforge.training.distributed import DistContext, barrier
from specforge.training.layout import STATE_FILE, STEP_DIR, WEIGHTS_FILE, step_dir_name

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass(frozen=True)
class Position:
    """Where training stands: completed optimizer steps, epoch, next micro-batch in that epoch."""

    step: int
    epoch: int
    micro: int


def _frozen(model: torch.nn.Module) -> set[str]:
    return {n for n, p in _unwrap(model).named_parameters() if not p.requires_grad}


def checkpointed_names(model: torch.nn.Module) -> set[str]:
    """Names a checkpoint holds: trainable parameters and persistent buffers (no collective)."""
    return set(_unwrap(model).state_dict().keys()) - _frozen(model)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full (gathered) state of trainable parameters and persistent buffers, on CPU.

    Collective under DDP/FSDP; only rank 0 receives the tensors (the others get an empty dict).
    """
    full = get_model_state_dict(model, options=FULL)
    frozen = _frozen(model)
    return {k: v.detach().contiguous().clone() for k, v in full.items() if k not in frozen}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(ctx: DistContext, root: Path, *, position: Position, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, extra_state: dict, contract: dict, config_toml: str,
         keep: int, on_saved: Callable[[Path], None] | None = None) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint folder.

    ``on_saved`` runs on rank 0 once the folder is in place, before rotation (it may mark the
    folder ``best``, which rotation then keeps)."""
    weights = trainable_state(model)
    optim = get_optimizer_state_dict(model, optimizer, options=FULL)
    final = root / step_dir_name(position.step)
    tmp = root / f".tmp-{step_dir_name(position.step)}"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(ctx)
    if ctx.is_main:
        save_safetensors(weights, tmp / WEIGHTS_FILE)
        kill_point(f"ckpt-write:{position.step}", ctx.rank)
        torch.save({"optimizer": optim, "step": position.step, "epoch": position.epoch,
                    "micro": position.micro, "extra_state": extra_state, "contract": contract},
                   tmp / STATE_FILE)
        (tmp / "config.toml").write_text(config_toml)
    torch.save(_rng_state(), tmp / f"rng-rank{ctx.rank}.pt")
    barrier(ctx)
    if ctx.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if on_saved is not None:
            on_saved(final)
        _prune(root, keep)
    barrier(ctx)
    return final


def _prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints, and the one ``best`` links to."""
    if keep <= 0:
        return
    protected = best_step_dir(root)
    steps = sorted(p for p in root.iterdir() if STEP_DIR.match(p.name))
    for old in steps[:-keep]:
        if old.name != protected:
            shutil.rmtree(old, ignore_errors=True)


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's state.pt (optimizer, position, extra state, contract); damaged -> UserError."""
    try:
        return torch.load(path / STATE_FILE, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} has no {STATE_FILE}: it is incomplete; use an earlier checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path}/{STATE_FILE} cannot be read ({type(exc).__name__}: {exc}); the file is "
                        f"damaged: use an earlier checkpoint") from None


def last_loss(run_dir: Path, step: int) -> float:
    """The loss metrics.jsonl recorded at ``step`` (nan when there is none, e.g. before step 1)."""
    path = run_dir / "metrics.jsonl"
    if step < 1 or not path.is_file():
        return math.nan
    for line in reversed(path.read_text().splitlines()):
        if line.strip():
            record = json.loads(line)
            if record.get("step") == step and "loss" in record:
                return float(record["loss"])
    return math.nan


def check_contract(saved: dict, current: dict, path: Path) -> None:
    """Refuse a resume whose world size, batch, data or horizon changed: it could not be exact."""
    changed = [f"{k}: checkpoint {saved.get(k)!r}, now {v!r}" for k, v in current.items() if saved.get(k) != v]
    if changed:
        raise ConfigError(f"cannot resume from {path}: " + "; ".join(changed) +
                          ". Resume needs the same settings; start a new run (--init-draft to reuse the "
                          "weights) instead")


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load trainable weights (frozen target weights are already in the freshly built draft)."""
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} has no {WEIGHTS_FILE}: it is incomplete; use an earlier "
                        f"checkpoint") from None
    except Exception as exc:  # safetensors raises its own error types for a truncated header or data
        raise UserError(f"checkpoint {path}/{WEIGHTS_FILE} cannot be read ({type(exc).__name__}: {exc}); the file "
                        f"is damaged: use an earlier checkpoint") from None
    own = checkpointed_names(model)
    missing = sorted(own - set(weights))
    unexpected = sorted(set(weights) - own)
    if missing or unexpected:
        raise ConfigError(f"checkpoint {path} does not fit this draft: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}; was it trained with other strategy options?")
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))


def load(ctx: DistContext, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Position:
    """Restore weights, optimizer, and this rank's RNG; return where to continue."""
    load_weights(model, path)
    state = read_state(path)
    set_optimizer_state_dict(model, optimizer, state["optimizer"],
                             options=StateDictOptions(full_state_dict=True))
    rng_file = path / f"rng-rank{ctx.rank}.pt"
    _set_rng_state(torch.load(rng_file, weights_only=True))
    return Position(step=state["step"], epoch=state["epoch"], micro=state["micro"])
