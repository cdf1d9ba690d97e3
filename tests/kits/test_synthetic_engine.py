"""The synthetic target engine the kit measures τ with: it is the rule language, as an engine."""

from __future__ import annotations

import torch

from specforge.contracts import FeatureRequest, Sample
from specforge.evaluation.speculative import check_lossless, speculative_generate, summarize
from specforge.testing import synthetic
from specforge.testing.synthetic_engine import SyntheticTargetEngine

INFO = synthetic.tiny_target_info()


class Oracle:
    """Drafts the rule's own continuation: every draft token is accepted."""

    def begin_decode(self, draft, prompt_ids, features):
        return None

    def propose(self, draft, state, accepted_ids, features, k):
        return synthetic.continue_ids(accepted_ids, k, INFO)


def test_greedy_generation_is_the_rule_continuation() -> None:
    engine = SyntheticTargetEngine(INFO)
    prompts = [synthetic.synthetic_ids(5, INFO, seed=s) for s in range(6)]
    assert engine.generate(prompts, 30) == [synthetic.continue_ids(p, 30, INFO) for p in prompts]


def test_generation_stops_after_a_stop_token() -> None:
    engine = SyntheticTargetEngine(INFO)
    prompt = synthetic.synthetic_ids(5, INFO, seed=3)
    rule = synthetic.continue_ids(prompt, 10, INFO)
    assert engine.generate([prompt], 10, stop_ids=[rule[3]])[0] == rule[: rule.index(rule[3]) + 1]


def test_capture_returns_the_synthetic_features_of_each_sample() -> None:
    engine = SyntheticTargetEngine(INFO)
    request = FeatureRequest(layers=(1, 4), last_hidden=True)
    ids = synthetic.synthetic_ids(12, INFO, seed=1)
    got = engine.capture([Sample("s", tuple(ids), (0,) * 4 + (1,) * 8)], request)[0]
    want = synthetic.synthetic_features(INFO, request, ids, [0] * 4 + [1] * 8)
    assert set(got) == set(want) == {"input_ids", "loss_mask", "hidden_states", "last_hidden"}
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_an_oracle_drafter_gets_tau_k_plus_1_through_the_real_evaluator_losslessly() -> None:
    engine = SyntheticTargetEngine(INFO)
    prompts = [synthetic.synthetic_ids(4, INFO, seed=s) for s in range(3)]
    traces = [speculative_generate(engine, Oracle(), None, p, FeatureRequest(last_hidden=True), k=3,
                                   max_new_tokens=23) for p in prompts]
    check_lossless(engine, prompts, traces, 23)
    # 23 tokens: the prefill's, 5 rounds of 3 accepted drafts + the target's own, 1 round of 2 (the cap)
    assert [t.accepted for t in traces] == [[3] * 5 + [2]] * 3
    assert summarize(traces, 3).tau == (3 * 5 + 2 + 6) / 6
