"""Registers the ``dflash`` strategy; imports no torch."""

from __future__ import annotations

from specforge.plugin import StrategySpec, hookimpl
from specforge_dflash.options import DFlashOptions


@hookimpl
def specforge_register_strategies(register) -> None:
    register(StrategySpec(
        name="dflash",
        summary="DFlash: block-parallel drafter fed target layers by KV injection",
        factory="specforge_dflash.strategy:DFlashStrategy",
        export_formats=("sglang",),  # the DFlashDraftModel directory SGLang loads
        options=DFlashOptions,
        # The embedded demo's answers are short: blocks of 8 (the setting), fewer anchors.
        demo={"strategy": {"block_size": 8, "num_anchors": 64}, "eval": {"k": 8}, "training": {"lr": 1e-3}},
    ))
