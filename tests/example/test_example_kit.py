"""The out-of-tree example plugin passes the strategy conformance kit, installed like any plugin."""

from __future__ import annotations

from typing import ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestExampleMedusaKit(StrategyKit):
    strategy_name = "example-medusa"
    options: ClassVar[dict] = {"num_heads": 3, "hidden_layers": 1}
