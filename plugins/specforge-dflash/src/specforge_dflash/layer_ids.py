"""Which target layers DFlash reads (pure, no torch)."""

from __future__ import annotations

from specforge.api import UserError

LAYER_OPTION = "--set strategy.target_layer_ids=[...]"


def default_target_layer_ids(num_layers: int, num_draft_layers: int) -> tuple[int, ...]:
    """The default rule: one draft layer reads the middle layer, n layers spread over 1..L-3.

    Ids are 0-based "output of decoder layer i" (Hugging Face ``hidden_states[i+1]``).
    """
    if num_draft_layers == 1:
        return (num_layers // 2,)
    span = num_layers - 4
    return tuple(round(1 + i * span / (num_draft_layers - 1)) for i in range(num_draft_layers))


def resolve_target_layer_ids(explicit: tuple[int, ...] | None, num_draft_layers: int,
                             num_layers: int) -> tuple[int, ...]:
    """The explicit ids or the default rule, checked against the target's layer count."""
    ids = tuple(explicit) if explicit else default_target_layer_ids(num_layers, num_draft_layers)
    bad = [i for i in ids if not 0 <= i < num_layers]
    if bad:
        origin = "strategy.target_layer_ids" if explicit else (
            f"the default rule for {num_draft_layers} draft layers")
        raise UserError(
            f"target layer ids {list(ids)} from {origin} include {bad}, out of range for a target "
            f"with {num_layers} layers (valid 0..{num_layers - 1}); choose layers with {LAYER_OPTION}")
    if len(set(ids)) != len(ids):
        raise UserError(f"target layer ids {list(ids)} repeat a layer (a target with {num_layers} "
                         f"layers is too small for this rule); choose layers with {LAYER_OPTION}")
    return ids
