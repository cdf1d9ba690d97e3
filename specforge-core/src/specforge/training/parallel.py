"""Wrap the draft for data parallelism: DDP, or FSDP2 sharding each draft layer, then the root.

A strategy names its repeated blocks with the optional ``LayeredStrategy.draft_layers(draft)``;
FSDP2 shards each of them and then the rest of the draft, and
``training.activation_checkpointing`` recomputes each of them in backward instead of keeping its
activations (non-reentrant ``torch.utils.checkpoint``; the blocks' forwards must be free of side
effects, since they run twice). A strategy without the method is sharded as one unit and cannot
checkpoint.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from specforge.contracts import LayeredStrategy
from specforge.errors import ConfigError
from specforge.training.precision import fsdp_policy

log = logging.getLogger(__name__)


def draft_layers(strategy: Any, draft: Any) -> list[Any]:
    return list(strategy.draft_layers(draft)) if isinstance(strategy, LayeredStrategy) else []


def checkpoint_layers(layers: list[Any]) -> None:
    """Recompute each layer's activations in backward (its forward must have no side effects);
    ``uncheckpoint_layers`` restores the plain forwards (before a draft is copied or exported)."""
    from torch.utils.checkpoint import checkpoint

    for layer in layers:
        forward = layer.forward

        @functools.wraps(forward)
        def recomputed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        layer.forward = recomputed


def uncheckpoint_layers(layers: list[Any]) -> None:
    for layer in layers:
        if "forward" in vars(layer):
            del layer.forward


def wrap(model: Any, dist: Any, *, parallel: str, precision: str, layers: list[Any], checkpointing: bool,
         strategy_name: str) -> Any:
    """The model as the optimizer will see it (DDP, FSDP2, or itself on one process)."""
    if checkpointing:
        if not layers:
            raise ConfigError(f"training.activation_checkpointing needs the strategy to name its layers "
                              f"(draft_layers); {strategy_name!r} does not: leave it off")
        checkpoint_layers(layers)
    if not dist.distributed:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        policy = fsdp_policy(precision)
        kwargs = {"mp_policy": policy} if policy is not None else {}
        for layer in layers:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        log.info("FSDP2: %d draft layer(s) sharded, then the root", len(layers))
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
