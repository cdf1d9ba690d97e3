"""EAGLE3 passes the strategy conformance kit every strategy plugin runs."""

from __future__ import annotations

from typing import Any, ClassVar

from specforge.testing.strategy_kit import StrategyKit


class TestEagle3Conformance(StrategyKit):
    strategy_name = "eagle3"
    options: ClassVar[dict[str, Any]] = {"ttt_length": 3}
    # EAGLE3's loss is a soft cross-entropy against the target's distribution, whose floor is the
    # teacher's entropy. The synthetic target's logits have std ~1 over 128 tokens, so the floor
    # is 0.89 x the initial loss here (5.31 of 5.94; 200 steps reach it to 1e-3): 0.8 is out of
    # reach for any correct implementation. tests/eagle3/test_training.py checks the fall on a
    # sharp teacher.
    loss_ratio = 0.92
