"""`specforge bench`'s pieces without a model: prompt groups by category, and the eval overrides."""

from __future__ import annotations

import pytest

from specforge.evaluation.evaluate import EvalSettings
from specforge.run.bench import eval_overrides, groups, subplan
from specforge.run.evaluate import EvalPlan


def _plan(categories: tuple[str, ...]) -> EvalPlan:
    n = len(categories)
    return EvalPlan([[i] for i in range(n)], [f"p{i}" for i in range(n)], "f.jsonl",
                    EvalSettings(k=2, num_prompts=n, max_new_tokens=4), [], categories)


def test_groups_take_the_first_prompts_of_each_category_in_file_order() -> None:
    plan = _plan(("a", "b", "a", "", "a", "b"))
    assert groups(plan, 2) == [("a", [0, 2]), ("b", [1, 5]), ("(none)", [3])]


def test_a_file_without_categories_is_one_group() -> None:
    assert groups(_plan(("", "", "")), 2) == [("-", [0, 1])]


def test_a_subplan_keeps_the_settings_and_counts_its_prompts() -> None:
    part = subplan(_plan(("a", "b", "a")), [0, 2])
    assert part.prompts == [[0], [2]] and part.names == ["p0", "p2"] and part.categories == ("a", "a")
    assert part.settings == EvalSettings(k=2, num_prompts=2, max_new_tokens=4)


def test_overrides_keep_the_lossless_check_on_and_pass_the_generated_length() -> None:
    assert eval_overrides(16, {}) == {"check_lossless": True, "max_new_tokens": 16}
    assert eval_overrides(None, {"topk": None}) == {"check_lossless": True}


@pytest.mark.parametrize("key", ["topk", "num_draft_tokens"])
def test_a_tree_setting_is_passed_as_its_eval_key(key: str) -> None:
    assert eval_overrides(None, {key: 4}) == {"check_lossless": True, key: 4}
