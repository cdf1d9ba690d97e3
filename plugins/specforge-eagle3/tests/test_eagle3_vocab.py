"""The draft vocabulary: most frequent supervised tokens, d2t offsets, t2d membership, provenance."""

from __future__ import annotations

import pytest
import torch
from eagle3_tiny import build, make_info, make_stats

from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy
from specforge_eagle3.vocab import VocabMapping, build_vocab_mapping


def test_the_most_frequent_ids_are_kept_ascending_with_ties_to_the_lower_id() -> None:
    counts = {5: 10, 2: 10, 7: 3, 9: 3, 1: 1}
    mapping = build_vocab_mapping(counts, draft_vocab_size=3, vocab_size=12)
    assert mapping.target_ids == (2, 5, 7)
    assert mapping.d2t().tolist() == [2, 4, 5]  # target = draft + d2t[draft]
    assert mapping.t2d().nonzero().flatten().tolist() == [2, 5, 7]
    assert mapping.t2d().dtype == torch.bool and mapping.t2d().shape == (12,)


def test_fewer_distinct_ids_than_the_draft_vocab_are_filled_with_the_lowest_unseen_ids() -> None:
    mapping = build_vocab_mapping({8: 4, 3: 2}, draft_vocab_size=5, vocab_size=10)
    assert mapping.target_ids == (0, 1, 2, 3, 8)
    assert mapping.d2t().tolist() == [0, 0, 0, 0, 4]


def test_a_draft_vocab_larger_than_the_target_vocab_is_the_identity_mapping() -> None:
    mapping = build_vocab_mapping({4: 9}, draft_vocab_size=32000, vocab_size=10)
    assert mapping.draft_vocab_size == 10
    assert mapping.d2t().tolist() == [0] * 10 and bool(mapping.t2d().all())


def test_token_ids_outside_the_target_vocab_are_rejected() -> None:
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        build_vocab_mapping({3: 1, 12: 1}, draft_vocab_size=2, vocab_size=10)


def test_a_mapping_survives_its_d2t_alone() -> None:
    mapping = build_vocab_mapping({1: 3, 6: 2, 7: 1}, draft_vocab_size=3, vocab_size=9)
    assert VocabMapping.from_d2t(mapping.d2t(), 9) == mapping


def test_build_draft_takes_its_vocab_buffers_from_the_corpus_counts() -> None:
    _, draft, _ = build({"draft_vocab_size": 4}, counts={30: 5, 3: 9, 11: 5, 20: 1, 7: 2})
    assert draft.d2t.tolist() == [3, 6, 9, 27]  # ids 3, 7, 11, 30
    assert draft.t2d.nonzero().flatten().tolist() == [3, 7, 11, 30]


def test_load_extra_state_reuses_the_saved_vocab_instead_of_the_new_corpus() -> None:
    info = make_info()
    strategy = Eagle3Strategy(Eagle3Options(draft_vocab_size=4))
    first = strategy.build_draft(info, make_stats({1: 5, 2: 5, 3: 5, 4: 5}, corpus_hash="first"))
    state = strategy.extra_state(first)
    assert state["vocab_mapping"]["corpus_hash"] == "first"
    second = strategy.build_draft(info, make_stats({10: 5, 20: 5, 30: 5, 39: 5}, corpus_hash="second"))
    assert second.t2d.nonzero().flatten().tolist() == [10, 20, 30, 39]
    strategy.load_extra_state(second, state)
    assert second.t2d.nonzero().flatten().tolist() == [1, 2, 3, 4]
    assert torch.equal(second.d2t, first.d2t)
    assert strategy.extra_state(second)["vocab_mapping"]["corpus_hash"] == "first"
