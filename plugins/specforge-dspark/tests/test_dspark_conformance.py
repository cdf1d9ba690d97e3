"""DSpark passes the strategy conformance kit every strategy plugin runs, with each Markov head."""

from __future__ import annotations

from typing import ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestDSparkConformance(StrategyKit):
    strategy_name = "dspark"
    options: ClassVar[dict] = {"block_size": 4, "num_anchors": 16, "num_draft_layers": 2, "markov_rank": 8}
    propose_k = 8
    max_proposal = 4  # every slot drafts the token after it: block_size tokens per forward


class TestDSparkRNNHeadConformance(TestDSparkConformance):
    options: ClassVar[dict] = {**TestDSparkConformance.options, "markov_head_type": "rnn"}


class TestDSparkGatedHeadConformance(TestDSparkConformance):
    options: ClassVar[dict] = {**TestDSparkConformance.options, "markov_head_type": "gated",
                               "confidence_head_with_markov": False}
