"""Prompts verified together (``eval.batch_size``) decode exactly as they do one by one: the same
tokens, drafts, acceptances and features, whatever each row accepts, wherever it stops."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest
import torch

from specforge.contracts import BatchDecodingEngine, FeatureRequest
from specforge.evaluation.speculative import (
    check_lossless,
    decode_groups,
    speculative_generate,
    speculative_generate_batch,
)

REQUEST = FeatureRequest(layers=(0, 1), last_hidden=True)
PROMPTS = [[5, 17, 42, 8], [100, 3, 9], [7, 7, 7, 7, 7, 7], [60, 2, 11, 19, 23]]
MAX_NEW = 22


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from specforge.engines.hf import HFEngine
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=2, hidden=32, heads=2, kv_heads=1, seed=3, initializer_range=0.2)
    eng = HFEngine(model_path=str(path), dtype="float64", device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def greedy(engine):
    return {tuple(p): out for p in PROMPTS for out in engine.generate([p], 64)}


class Drafter:
    """Drafts the target's greedy continuation with a per-prompt share of wrong tokens, so rows
    accept different amounts each round (and finish in different rounds); records the features
    it is given."""

    def __init__(self, greedy, wrong_every: dict[int, int]):
        self.greedy, self.wrong_every, self.seen = greedy, wrong_every, []

    def begin_decode(self, draft, prompt_ids, features):
        return tuple(prompt_ids)

    def propose(self, draft, state, accepted_ids, features, k):
        assert features["last_hidden"].shape[0] == len(accepted_ids) - 1
        self.seen.append((state, len(accepted_ids), {n: features[n].clone() for n in ("hidden_states", "logits")}))
        done = len(accepted_ids) - len(state)
        every = self.wrong_every[len(state)]
        good = self.greedy[state][done:done + k]
        return [1 if every and (len(accepted_ids) + i) % every == 0 else t for i, t in enumerate(good)]


WRONG = {4: 3, 3: 0, 6: 2, 5: 1}  # by prompt length: every 3rd wrong, none, every 2nd, all


def _by_prompt(seen):
    out = {}
    for state, n, feats in seen:
        out.setdefault(state, []).append((n, feats))
    return out


@pytest.mark.parametrize("k", [1, 4])
def test_a_batch_decodes_like_each_prompt_alone(engine, greedy, k):
    alone, together = Drafter(greedy, WRONG), Drafter(greedy, WRONG)
    one = [speculative_generate(engine, alone, None, p, REQUEST, k=k, max_new_tokens=MAX_NEW) for p in PROMPTS]
    batch = speculative_generate_batch(engine, together, None, PROMPTS, REQUEST, k=k, max_new_tokens=MAX_NEW)
    assert [(t.tokens, t.drafted, t.accepted) for t in batch] == [(t.tokens, t.drafted, t.accepted) for t in one]
    assert len({len(t.accepted) for t in batch}) > 1, "rows should finish in different rounds"
    check_lossless(engine, PROMPTS, batch, MAX_NEW, batch_size=len(PROMPTS))
    seen_alone, seen_together = _by_prompt(alone.seen), _by_prompt(together.seen)
    assert seen_alone.keys() == seen_together.keys()
    for prompt, rounds in seen_alone.items():
        assert [n for n, _ in rounds] == [n for n, _ in seen_together[prompt]]
        for (_, a), (_, b) in zip(rounds, seen_together[prompt]):
            for name in a:
                torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-12)


def test_a_stop_token_ends_a_row_early_and_the_others_go_on(engine, greedy):
    stop = greedy[tuple(PROMPTS[1])][5]  # the 6th token prompt 1 generates
    kwargs = {"k": 3, "max_new_tokens": MAX_NEW, "stop_ids": [stop]}
    one = [speculative_generate(engine, Drafter(greedy, WRONG), None, p, REQUEST, **kwargs) for p in PROMPTS]
    batch = speculative_generate_batch(engine, Drafter(greedy, WRONG), None, PROMPTS, REQUEST, **kwargs)
    assert [t.tokens for t in batch] == [t.tokens for t in one]
    assert batch[1].tokens[-1] == stop and len(batch[1].tokens) <= 6
    assert max(len(t.tokens) for t in batch) > 6


def test_groups_are_batched_only_where_the_engine_can_verify_them_together(engine, greedy):
    assert isinstance(engine, BatchDecodingEngine)
    drafter = Drafter(greedy, WRONG)
    sizes = {kv: [len(g) for g, _ in decode_groups(engine, drafter, None, PROMPTS, REQUEST, k=2, max_new_tokens=6,
                                                   kv_cache=kv, batch_size=3)] for kv in (True, False)}
    assert sizes == {True: [3, 1], False: [1, 1, 1, 1]}


def test_the_batch_session_scores_like_one_session_per_row_through_holes_compaction_and_dropped_rows(engine):
    """Random rounds: each row runs 1-5 tokens and keeps a random prefix of them, as verification
    does; one row leaves the batch halfway. Every row's logits and features match its own
    unbatched session's, and the cache was compacted at least once."""
    request = FeatureRequest(layers=(1,), last_hidden=True, logits=True)
    rng = random.Random(0)
    prompts = [list(p) for p in PROMPTS]
    singles = [engine.decode_session(request) for _ in prompts]
    for session, p in zip(singles, prompts):
        session.extend(p)
    batch = engine.decode_batch_session(request)
    batch.extend(prompts)
    widths = []
    for round_ in range(30):
        if round_ == 15:
            batch.retain([0, 2, 3])
            singles = [singles[0], singles[2], singles[3]]
        rows = [[rng.randrange(10, 120) for _ in range(rng.randint(1, 5))] for _ in singles]
        together = batch.extend(rows)
        keeps = []
        for session, row, got in zip(singles, rows, together):
            alone = session.extend(row)
            for name in ("logits", "hidden_states", "last_hidden"):
                torch.testing.assert_close(got[name], alone[name], rtol=0, atol=1e-12)
            keeps.append(rng.randint(0, len(row)))
            session.truncate(session.length - len(row) + keeps[-1])
        batch.keep(keeps)
        widths.append(batch.kept.shape[1])
        assert batch.lengths == [s.length for s in singles]
    assert any(b < a for a, b in pairwise(widths)), "the cache should have been compacted"
    batch.close()
