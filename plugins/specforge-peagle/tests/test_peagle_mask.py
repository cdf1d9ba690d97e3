"""The depth/anchor attention mask, element by element, against a dense reference written from the
facts: same document ∧ not padding ∧ ((key depth 0 ∧ q_anchor >= kv_anchor) ∨ (same anchor ∧
q_depth >= kv_depth))."""

from __future__ import annotations

import pytest
import torch
from specforge_peagle.mask import peagle_mask


def dense_reference(anchors: list[int], depths: list[int], documents: list[int]) -> list[list[bool]]:
    n = len(anchors)
    out = [[False] * n for _ in range(n)]
    for q in range(n):
        for k in range(n):
            same_doc = documents[q] == documents[k]
            not_padding = documents[q] != -1
            context = depths[k] == 0 and anchors[q] >= anchors[k]
            chain = anchors[q] == anchors[k] and depths[q] >= depths[k]
            out[q][k] = same_doc and not_padding and (context or chain)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_the_mask_equals_the_dense_reference_for_packed_documents_and_padding(seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    n, batch = 30, 2
    anchors = torch.randint(0, 12, (batch, n), generator=gen)
    depths = torch.randint(0, 4, (batch, n), generator=gen) * (torch.rand(batch, n, generator=gen) < 0.6)
    documents = torch.randint(-1, 2, (batch, n), generator=gen)
    got = peagle_mask(anchors, depths, documents)
    assert got.shape == (batch, 1, n, n) and got.dtype == torch.bool
    for b in range(batch):
        expected = dense_reference(anchors[b].tolist(), depths[b].tolist(), documents[b].tolist())
        for q in range(n):
            if documents[b, q] == -1:  # a padding query sees itself only (its row must stay finite)
                assert got[b, 0, q].tolist() == [k == q for k in range(n)]
            else:
                assert got[b, 0, q].tolist() == expected[q], (b, q)


def test_the_documented_cases() -> None:
    # elements: (0,0) (1,0) (1,1) (2,0) (4,0) (4,1) (5,0); documents [0,0,0 | 1,1 | pad]
    anchors = torch.tensor([[0, 1, 1, 2, 4, 4, 5]])
    depths = torch.tensor([[0, 0, 1, 0, 0, 1, 0]])
    documents = torch.tensor([[0, 0, 0, 0, 1, 1, -1]])
    m = peagle_mask(anchors, depths, documents)[0, 0]
    assert m[2, 1] and m[2, 0]  # depth 1 sees its own chain's depth 0 and the causal context
    assert not m[1, 2]  # a real token never sees a drafted position
    assert not m[3, 2]  # ... nor another chain's, even a later anchor's
    assert not m[2, 3]  # a drafted position never sees context after its anchor
    assert not m[4, 3] and not m[5, 0]  # never across documents
    assert m[6].tolist() == [False] * 6 + [True]  # padding
