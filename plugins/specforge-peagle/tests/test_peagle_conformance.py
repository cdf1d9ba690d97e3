"""P-EAGLE passes the strategy conformance kit every strategy plugin runs."""

from __future__ import annotations

from typing import Any, ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestPeagleConformance(StrategyKit):
    strategy_name = "peagle"
    options: ClassVar[dict[str, Any]] = {"num_draft_layers": 2, "num_depths": 3}
