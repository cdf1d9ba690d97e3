"""Character spans -> token loss mask, on hand-made token offsets."""

from __future__ import annotations

from specforge.data.loss_mask import has_consecutive_ones, spans_to_mask

# "<h>\n\nHi<e>\n" as tokens: "<h>" [0,3), "\n\n" [3,5) straddles the span start at 4, "Hi" [5,7),
# "<e>" [7,10), "\n" [10,11)
OFFSETS = [(0, 3), (3, 5), (5, 7), (7, 10), (10, 11)]


def test_tokens_inside_a_span_are_trained_and_header_tokens_are_not():
    assert spans_to_mask(OFFSETS, [(5, 11)]) == [0, 0, 1, 1, 1]


def test_a_token_straddling_the_span_start_carries_reply_text_and_is_trained():
    assert spans_to_mask(OFFSETS, [(4, 11)]) == [0, 1, 1, 1, 1]


def test_several_spans_and_an_empty_span():
    assert spans_to_mask(OFFSETS, [(0, 3), (7, 7), (7, 10)]) == [1, 0, 0, 1, 0]


def test_zero_width_tokens_follow_their_position():
    offsets = [(0, 2), (2, 2), (2, 4), (4, 4)]
    assert spans_to_mask(offsets, [(2, 4)]) == [0, 1, 1, 0]


def test_consecutive_ones():
    assert has_consecutive_ones([0, 1, 1, 0])
    assert not has_consecutive_ones([1, 0, 1, 0, 1])
    assert not has_consecutive_ones([])
