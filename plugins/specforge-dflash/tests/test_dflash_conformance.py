"""DFlash passes the strategy conformance kit every strategy plugin runs."""

from __future__ import annotations

from typing import ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestDFlashConformance(StrategyKit):
    strategy_name = "dflash"
    options: ClassVar[dict] = {"block_size": 4, "num_anchors": 16, "num_draft_layers": 2}
    propose_k = 8
    max_proposal = 3  # a block strategy drafts block_size - 1 tokens per forward
