"""Domino passes the strategy conformance kit every strategy plugin runs."""

from __future__ import annotations

from typing import ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestDominoConformance(StrategyKit):
    strategy_name = "domino"
    options: ClassVar[dict] = {"block_size": 4, "num_anchors": 16, "num_draft_layers": 2,
                               "gru_hidden_dim": 16, "emb_dim": 8}
    propose_k = 8
    max_proposal = 3  # bs - 1 tokens, corrected one after another
