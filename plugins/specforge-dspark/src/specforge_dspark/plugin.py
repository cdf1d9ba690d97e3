"""Registers the ``dspark`` strategy; imports no torch."""

from __future__ import annotations

from specforge.plugin import StrategySpec, hookimpl
from specforge_dspark.options import DSparkOptions


@hookimpl
def specforge_register_strategies(register) -> None:
    register(StrategySpec(
        name="dspark",
        summary="DSpark: DFlash backbone plus a Markov previous-token logit head and a confidence head",
        factory="specforge_dspark.strategy:DSparkStrategy",
        export_formats=("sglang",),  # the Qwen3DSparkModel directory SGLang's DSPARK worker loads
        options=DSparkOptions,
        # The embedded demo's answers are short: blocks of 7 (the shipped size), fewer anchors, a
        # Markov rank to suit its 512-token vocabulary.
        demo={"strategy": {"block_size": 7, "num_anchors": 64, "markov_rank": 64}, "eval": {"k": 7},
              "training": {"lr": 1e-3}},
    ))
