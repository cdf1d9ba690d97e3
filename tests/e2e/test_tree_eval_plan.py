"""`run --plan` states the evaluation's draft shape in SGLang's flags, and refuses a tree for a
block drafter before anything loads."""

from __future__ import annotations

import pytest

from specforge.config import resolve
from specforge.errors import ConfigError
from specforge.registry import get_registry
from specforge.run.plan import describe_plan


def plan(strategy: str, *sets: str) -> list[str]:
    return describe_plan(resolve(get_registry(), flags={"strategy": strategy}, sets=list(sets)))


def test_the_plan_states_an_eagle3_tree_in_sglangs_three_numbers():
    lines = plan("eagle3", "eval.k=3", "eval.topk=4", "eval.num_draft_tokens=16")
    line = next(x for x in lines if x.strip().startswith("eval "))
    assert "--speculative-num-steps 3 --speculative-eagle-topk 4 --speculative-num-draft-tokens 16" in line


def test_the_plan_states_a_chain_by_default():
    line = next(x for x in plan("eagle3") if x.strip().startswith("eval "))
    assert "chain of k=4" in line and "--speculative-eagle-topk 1" in line


def test_a_tree_for_dflash_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"strategy 'dflash' drafts chains, not trees: set eval\.topk = 1"):
        plan("dflash", "eval.topk=2")
