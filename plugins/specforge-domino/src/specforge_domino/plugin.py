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
        options=DominoOptions,
    ))
