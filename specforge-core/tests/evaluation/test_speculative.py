"""Speculative decoding is lossless whatever the drafter, and τ measures the drafter honestly."""

from __future__ import annotations

import pytest
import torch

from specforge.contracts import FeatureRequest
from specforge.evaluation.speculative import (
    LosslessError,
    PromptTrace,
    check_lossless,
    speculative_generate,
    summarize,
)

REQUEST = FeatureRequest(last_hidden=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from specforge.engines.hf import HFEngine, HFEngineOptions
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=2, hidden=32, heads=2, kv_heads=1, seed=3, initializer_range=0.2)
    eng = HFEngine(HFEngineOptions(), model_path=str(path), dtype="float64", device="cpu")
    yield eng
    eng.close()


PROMPTS = [[5, 17, 42, 8], [100, 3, 9], [7, 7, 7, 7, 7, 7]]
MAX_NEW = 20


class Oracle:
    """Drafts the target's own greedy continuation (known in advance): every draft is accepted."""

    def __init__(self, engine):
        self.greedy = {tuple(p): g for p, g in zip(PROMPTS, engine.generate(PROMPTS, 64))}

    def begin_decode(self, draft, prompt_ids, features):
        return tuple(prompt_ids)

    def propose(self, draft, state, accepted_ids, features, k):
        done = len(accepted_ids) - len(state)
        return self.greedy[state][done:done + k]


class Wrong:
    """Always drafts token 1, which the target (almost) never picks."""

    def begin_decode(self, draft, prompt_ids, features):
        return None

    def propose(self, draft, state, accepted_ids, features, k):
        return [1] * k


def run(engine, strategy, k):
    traces = [speculative_generate(engine, strategy, None, p, REQUEST, k=k, max_new_tokens=MAX_NEW) for p in PROMPTS]
    check_lossless(engine, PROMPTS, traces, MAX_NEW)
    return traces


def test_an_oracle_drafter_is_accepted_in_full_and_lossless(engine):
    result = summarize(run(engine, Oracle(engine), k=4), k=4)
    assert result.per_position_acceptance == [1.0, 1.0, 1.0, 1.0]
    assert result.tau > 4.0  # 5 per full round; the last round of a prompt may be cut by max_new_tokens


def test_a_bad_drafter_is_still_lossless_and_gives_tau_about_one(engine):
    result = summarize(run(engine, Wrong(), k=4), k=4)
    assert result.tau < 1.1
    assert result.new_tokens == MAX_NEW * len(PROMPTS)


def test_the_features_a_drafter_sees_cover_all_but_the_last_token(engine):
    seen = []

    class Probe(Wrong):
        def propose(self, draft, state, accepted_ids, features, k):
            seen.append((len(accepted_ids), features["last_hidden"].shape[0], features["logits"].shape[0]))
            return super().propose(draft, state, accepted_ids, features, k)

    run(engine, Probe(), k=2)
    assert seen and all(n - 1 == h == lg for n, h, lg in seen)


def test_a_divergent_output_fails_naming_prompt_and_position(engine):
    traces = run(engine, Wrong(), k=2)
    traces[1].tokens[5] = (traces[1].tokens[5] + 1) % 50
    with pytest.raises(LosslessError, match=r"prompt p1: .* at new-token position 5"):
        check_lossless(engine, PROMPTS, traces, MAX_NEW, names=["p0", "p1", "p2"])


def test_summary_counts_acceptance_per_draft_position():
    traces = [PromptTrace(tokens=[0] * 9, drafted=[4, 4], accepted=[2, 4])]
    result = summarize(traces, k=4)
    assert result.tau == 4.0  # (2 + 4 accepted + 2 bonus tokens) / 2 verifications
    assert result.per_position_acceptance == [1.0, 1.0, 0.5, 1.0]
    assert result.target_forwards == 3 and result.forwards_saved == 6


class HalfRight:
    """Drafts the greedy continuation with every third token wrong: rounds accept 0, 1 or 2."""

    def __init__(self, engine):
        self.oracle = Oracle(engine)

    def begin_decode(self, draft, prompt_ids, features):
        return tuple(prompt_ids)

    def propose(self, draft, state, accepted_ids, features, k):
        good = self.oracle.propose(draft, state, accepted_ids, features, k)
        return [t if (len(accepted_ids) + i) % 3 else 1 for i, t in enumerate(good)]


class FeatureSpy:
    """Records the features it is given each round (they must cover accepted_ids[:-1])."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def begin_decode(self, draft, prompt_ids, features):
        return self.inner.begin_decode(draft, prompt_ids, features)

    def propose(self, draft, state, accepted_ids, features, k):
        assert features["last_hidden"].shape[0] == len(accepted_ids) - 1
        self.seen.append({k: v.clone() for k, v in features.items() if k in ("last_hidden", "logits")})
        return self.inner.propose(draft, state, accepted_ids, features, k)


@pytest.mark.parametrize("make", [Oracle, Wrong, HalfRight], ids=["oracle", "wrong", "half-right"])
def test_the_kv_cache_path_decodes_exactly_like_re_running_the_sequence(engine, make):
    for prompt in PROMPTS:
        spies = [FeatureSpy(make(engine) if make is not Wrong else Wrong()) for _ in range(2)]
        cached, plain = (speculative_generate(engine, spy, None, prompt, REQUEST, k=4, max_new_tokens=MAX_NEW,
                                              kv_cache=kv) for spy, kv in zip(spies, (True, False)))
        assert (cached.tokens, cached.drafted, cached.accepted) == (plain.tokens, plain.drafted, plain.accepted)
        for a, b in zip(*(spy.seen for spy in spies)):  # the features each round, cached vs recomputed
            for name in a:
                torch.testing.assert_close(a[name], b[name], rtol=1e-9, atol=1e-9)


def test_a_decode_session_gives_the_features_of_a_full_capture(engine):
    from specforge.contracts import Sample

    request = FeatureRequest(layers=(0, 1), last_hidden=True, logits=True)
    ids = [5, 17, 42, 8, 100, 3, 9, 7]
    full = engine.capture([Sample("s", tuple(ids), (0,) * len(ids))], request)[0]
    session = engine.decode_session(request)
    first = session.extend(ids[:3])
    session.extend([1, 1, 1])  # a rejected draft ...
    session.truncate(3)  # ... leaves the cache
    rest = session.extend(ids[3:])
    assert session.length == len(ids)
    for name in ("hidden_states", "last_hidden", "logits"):
        got = torch.cat([first[name], rest[name]])
        torch.testing.assert_close(got, full[name], rtol=1e-9, atol=1e-9)
    session.close()


def test_speculative_decoding_reports_its_speed_against_plain_greedy(engine):
    from specforge.evaluation.evaluate import EvalSettings, evaluate_draft

    settings = EvalSettings(k=4, num_prompts=len(PROMPTS), max_new_tokens=MAX_NEW)
    result = evaluate_draft(engine, Oracle(engine), None, REQUEST, PROMPTS, ["a", "b", "c"], settings, [])
    assert result.greedy_tokens_per_s > 0 and result.tokens_per_s > 0
    assert result.speedup == pytest.approx(result.tokens_per_s / result.greedy_tokens_per_s)
