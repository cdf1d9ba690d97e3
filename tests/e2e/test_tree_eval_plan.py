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


def test_the_eval_lines_of_the_evaluation_doc_parse():
    import shlex
    from pathlib import Path

    from specforge.commands.eval import command

    doc = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"
    lines = [x.split(" #", 1)[0].strip() for x in doc.read_text().splitlines() if x.startswith("specforge eval ")]
    assert any("--topk" in x for x in lines)
    for line in lines:
        params = command.make_context("eval", shlex.split(line)[2:]).params
        if "--topk" in line:
            assert params["topk"] == 8 and params["num_draft_tokens"] == 64 and params["k"] == 5
