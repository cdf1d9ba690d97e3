"""eval.k / eval.topk / eval.num_draft_tokens: SGLang's three numbers, checked where the config is."""

from __future__ import annotations

import pytest

from specforge.config import EvalSection
from specforge.contracts import TreeShape
from specforge.errors import UserError
from specforge.evaluation.evaluate import EvalSettings
from specforge.evaluation.tree import describe_tree, eval_tree
from specforge.options import build_options


class ChainOnly:
    name = "chainy"

    def propose(self, draft, state, accepted_ids, features, k):
        return []


class TreeToo(ChainOnly):
    name = "treey"

    def propose_tree(self, draft, state, accepted_ids, features, shape):
        raise AssertionError("not drafted here")


def test_topk_one_is_a_chain_and_takes_only_k_plus_one_draft_tokens():
    assert eval_tree(4, 1, 0) is None
    assert eval_tree(4, 1, 5, ChainOnly()) is None
    with pytest.raises(UserError, match=r"eval\.num_draft_tokens = 5 or 0"):
        eval_tree(4, 1, 8)


def test_a_tree_without_a_token_budget_verifies_the_whole_expansion():
    # depth 3, top-2: 2 nodes, then 2 * 2 per later step: 2 + 4 + 4 = 10 nodes plus the root
    assert eval_tree(3, 2, 0, TreeToo()) == TreeShape(num_steps=3, topk=2, num_draft_tokens=11)
    assert eval_tree(3, 2, 6, TreeToo()) == TreeShape(num_steps=3, topk=2, num_draft_tokens=6)


def test_a_budget_above_the_expansion_names_the_largest_that_fits():
    with pytest.raises(UserError, match="at most 11"):
        eval_tree(3, 2, 12, TreeToo())


def test_a_chain_only_strategy_asked_for_a_tree_is_told_to_set_topk_1():
    with pytest.raises(UserError, match=r"strategy 'chainy' drafts chains, not trees: set eval\.topk = 1"):
        eval_tree(3, 2, 6, ChainOnly())


def test_the_eval_section_declares_the_ranges_and_reports_a_bad_shape():
    with pytest.raises(UserError, match=r"eval\.topk"):
        build_options(EvalSection, {"topk": 0}, "eval")
    with pytest.raises(UserError, match=r"eval\.num_draft_tokens"):
        build_options(EvalSection, {"num_draft_tokens": -1}, "eval")
    with pytest.raises(UserError, match="at most 11"):
        build_options(EvalSection, {"k": 3, "topk": 2, "num_draft_tokens": 12}, "eval")
    section = build_options(EvalSection, {"k": 3, "topk": 2, "num_draft_tokens": 6}, "eval")
    assert section.tree(TreeToo()) == TreeShape(3, 2, 6)
    assert section.tree(TreeToo(), k=2) == TreeShape(2, 2, 6), "a --k override is the tree's depth"


def test_eval_json_records_the_draft_in_sglang_terms():
    chain = EvalSettings(k=4, num_prompts=1, max_new_tokens=8)
    tree = EvalSettings(k=3, num_prompts=1, max_new_tokens=8, tree=TreeShape(3, 2, 6), kv_cache=False)
    assert chain.to_json() == {"num_steps": 4, "topk": 1, "num_draft_tokens": 5, "kv_cache": True}
    assert tree.to_json() == {"num_steps": 3, "topk": 2, "num_draft_tokens": 6, "kv_cache": False}
    assert "--speculative-eagle-topk 2 --speculative-num-draft-tokens 6" in describe_tree(3, TreeShape(3, 2, 6))
    assert "--speculative-eagle-topk 1 --speculative-num-draft-tokens 5" in describe_tree(4, None)
