"""COD sampling follows the documented rules: depth 0 is every position; depth d keeps
min(int((#supervised - d)·max(r^d, r_min)), #eligible) pairs whose target is supervised and in the
anchor's document, chained to depth d-1; never a negative anchor; seeded per sample."""

from __future__ import annotations

import pytest
import torch
from specforge_peagle.cod import cod_sample
from specforge_peagle.elements import training_elements


def reference_pairs(supervised: list[bool], documents: list[int], num_depths: int) -> set[tuple[int, int]]:
    """Every pair the rules allow when nothing is dropped (r = r_min = 1), written as set algebra."""
    seq = len(supervised)
    valid = {t for t in range(seq) if supervised[t] and documents[t] >= 0}
    pairs = {(t, 0) for t in range(seq) if documents[t] >= 0}
    previous = valid
    for d in range(1, num_depths):
        kept = {t for t in previous if t >= d and documents[t] == documents[t - d]}
        if not kept:
            break
        assert len(kept) <= len(valid) - d, "(#valid - d) would cap this depth: the draw would be random"
        pairs |= {(t - d, d) for t in kept}
        previous = {t + 1 for t in kept if t + 1 < seq} & valid
    return pairs


def random_case(seed: int, seq: int = 40):
    gen = torch.Generator().manual_seed(seed)
    supervised = torch.rand(seq, generator=gen) < 0.7
    cuts = sorted(torch.randint(1, seq, (2,), generator=gen).tolist())
    documents = torch.zeros(seq, dtype=torch.int64)
    documents[cuts[0]:] = 1
    documents[cuts[1]:] = 2
    pad = int(torch.randint(0, 6, (1,), generator=gen))
    if pad:
        documents[-pad:] = -1
        supervised[-pad:] = False
    return supervised, documents


@pytest.mark.parametrize("seed", range(6))
def test_keeping_everything_gives_exactly_the_pairs_the_rules_allow(seed) -> None:
    supervised, documents = random_case(seed)
    got = cod_sample(supervised, documents, 5, 1.0, 1.0, torch.Generator().manual_seed(0))
    pairs = list(zip(got.anchors.tolist(), got.depths.tolist()))
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == reference_pairs(supervised.tolist(), documents.tolist(), 5)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("ratio", "ratio_min"), [(0.8, 0.2), (0.5, 0.0), (0.7, 0.4)])
def test_sampled_pairs_keep_the_invariants_and_the_documented_counts(seed, ratio, ratio_min) -> None:
    supervised, documents = random_case(seed, seq=60)
    depths_wanted = 6
    got = cod_sample(supervised, documents, depths_wanted, ratio, ratio_min, torch.Generator().manual_seed(seed))
    anchors, depths = got.anchors.tolist(), got.depths.tolist()
    pairs = set(zip(anchors, depths))
    seq = len(documents)
    assert sorted(a for a, d in pairs if d == 0) == [t for t in range(seq) if documents[t] >= 0]
    assert all(a >= 0 for a in anchors)  # never negative
    valid = int((supervised & (documents >= 0)).sum())
    previous = {t for t in range(seq) if supervised[t] and documents[t] >= 0}
    for d in range(1, depths_wanted):
        level = sorted(a for a, dd in pairs if dd == d)
        assert level == sorted(a for a, dd in zip(anchors, depths) if dd == d)  # sorted within a depth
        for a in level:
            t = a + d
            assert t < seq and supervised[t], (a, d)  # the target is supervised
            assert documents[a] == documents[t] >= 0, (a, d)  # and in the anchor's document
            assert d == 1 or (a, d - 1) in pairs, (a, d)  # chains: depth d-1 of the same anchor was kept
        eligible = {t for t in previous if t >= d and documents[t] == documents[t - d]}
        expected = min(int((valid - d) * max(ratio ** d, ratio_min)), len(eligible))
        if expected <= 0:
            assert not level and all(dd < d for _, dd in pairs)  # sampling stops at the first empty depth
            break
        assert len(level) == expected, (d, len(level), expected)
        assert {a + d for a in level} <= eligible
        previous = {a + d + 1 for a in level if a + d + 1 < seq and supervised[a + d + 1] and documents[a + d + 1] >= 0}


def test_the_draw_is_seeded_and_changes_with_the_seed() -> None:
    supervised, documents = torch.ones(50, dtype=torch.bool), torch.zeros(50, dtype=torch.int64)
    one = cod_sample(supervised, documents, 4, 0.6, 0.2, torch.Generator().manual_seed(1))
    again = cod_sample(supervised, documents, 4, 0.6, 0.2, torch.Generator().manual_seed(1))
    other = cod_sample(supervised, documents, 4, 0.6, 0.2, torch.Generator().manual_seed(2))
    assert torch.equal(one.anchors, again.anchors) and torch.equal(one.depths, again.depths)
    assert not torch.equal(one.anchors, other.anchors)


def batch_of(lengths, pad_to=None):
    width = pad_to or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    attention = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.arange(n) * (b + 3) % 17
        mask[b, 2:n] = 1
        attention[b, :n] = 1
    return {"input_ids": ids, "loss_mask": mask, "attention_mask": attention,
            "sample_hash": torch.tensor([1000 + n for n in lengths])}


def test_a_samples_pairs_do_not_depend_on_its_batch_or_padding_and_change_with_the_step() -> None:
    alone = training_elements(batch_of([20]), 4, 0.7, 0.2, step=5, micro_step=0)
    in_batch = training_elements(batch_of([20, 31], pad_to=40), 4, 0.7, 0.2, step=5, micro_step=0)
    n = int((alone[2][0] >= 0).sum())
    for a, b in zip(alone, in_batch):
        assert torch.equal(a[0, :n], b[0, :n])
    assert (in_batch[2][0, n:] == -1).all()  # the rest of the row is padding
    later = training_elements(batch_of([20]), 4, 0.7, 0.2, step=6, micro_step=0)
    assert not torch.equal(later[0], alone[0])
    # the last real position has no teacher: it is never a drafted target
    positions = alone[0][0, :n] + alone[1][0, :n]
    assert int(positions[alone[1][0, :n] > 0].max()) <= 18
