"""Which target layers DFlash reads, and the mask token it drafts with (pure, no torch)."""

from __future__ import annotations

LAYER_OPTION = "--set strategy.target_layer_ids=[...]"
MASK_OPTION = "--set strategy.mask_token_id=<id>"


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
        raise ValueError(
            f"target layer ids {list(ids)} from {origin} include {bad}, out of range for a target "
            f"with {num_layers} layers (valid 0..{num_layers - 1}); choose layers with {LAYER_OPTION}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"target layer ids {list(ids)} repeat a layer (a target with {num_layers} "
                         f"layers is too small for this rule); choose layers with {LAYER_OPTION}")
    return ids


def resolve_mask_token_id(explicit: int | None, target_mask_id: int | None, vocab_size: int) -> int:
    """The option, else the target's reserved mask token; it must be a row of the embedding."""
    mask_id = explicit if explicit is not None else target_mask_id
    if mask_id is None:
        raise ValueError("DFlash needs a mask token and the target reserves none; pick an unused "
                         f"embedding row with {MASK_OPTION}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask token id {mask_id} is outside the target vocabulary (0..{vocab_size - 1}); "
                         f"set {MASK_OPTION}")
    return mask_id
