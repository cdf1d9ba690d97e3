"""Registers the ``domino`` strategy; imports no torch."""

from __future__ import annotations

from specforge.plugin import StrategySpec, hookimpl
from specforge_domino.options import DominoOptions


@hookimpl
def specforge_register_strategies(register) -> None:
    register(StrategySpec(
        name="domino",
        summary="Domino: DFlash backbone plus a GRU logit correction over earlier block tokens",
        factory="specforge_domino.strategy:DominoStrategy",
        export_formats=("sglang",),  # the DFlashDraftModel directory SGLang loads
        options=DominoOptions,
        # The embedded demo's answers are short: blocks of 8 (the setting), fewer anchors.
        demo={"strategy": {"block_size": 8, "num_anchors": 64}, "eval": {"k": 8}, "training": {"lr": 1e-3}},
    ))
