"""EAGLE3 on a real (tiny, float64) target: tree drafting is lossless and a top-1 tree is the chain,
a depth-1 top-k tree never needs more verification rounds than the 1-token chain, and the draft's
KV cache proposes exactly what re-running the draft over the whole prefix proposes."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from specforge.contracts import DataStats, Sample, StepContext, TreeShape
from specforge.evaluation.speculative import check_lossless, speculative_generate, summarize
from specforge.testing.strategy_kit import reduce_loss
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy

MAX_NEW = 40


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from specforge.engines.hf import HFEngine, HFEngineOptions
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=4, hidden=32, heads=2, kv_heads=1, seed=3, initializer_range=0.2)
    eng = HFEngine(HFEngineOptions(), model_path=str(path), dtype="float64", device="cpu")
    yield eng
    eng.close()


def random_prompts(engine, n: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    vocab = len(engine.info().tokenizer)
    return [torch.randint(3, vocab, (5,), generator=gen).tolist() for _ in range(n)]


@pytest.fixture(scope="module")
def trained(engine):
    """A draft trained (150 AdamW steps) on the target's own greedy continuations of 6 random
    prompts; decoding continues those prompts (the text it learnt, as the strategy kit does), so
    whole paths get accepted. Returns (strategy, draft, request, prompts)."""
    strategy = Eagle3Strategy(Eagle3Options(ttt_length=3))
    info = engine.info()
    request = strategy.feature_request(info)
    prompts = random_prompts(engine, 6, seed=0)
    samples = [Sample(sample_id=str(i), input_ids=tuple(p + c), loss_mask=(0,) * len(p) + (1,) * len(c))
               for i, (p, c) in enumerate(zip(prompts, engine.generate(prompts, 48)))]
    counts: dict[int, int] = {}
    for s in samples:
        for t, m in zip(s.input_ids, s.loss_mask):
            counts[t] = counts.get(t, 0) + m
    stats = DataStats(num_samples=len(samples), num_tokens=sum(len(s.input_ids) for s in samples),
                      num_loss_tokens=sum(counts.values()), corpus_hash="greedy", loss_token_counts=counts)
    torch.manual_seed(0)
    draft = strategy.build_draft(info, stats).double()
    batch = strategy.collate(engine.capture(samples, request))
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    draft.train()
    for step in range(150):
        opt.zero_grad(set_to_none=True)
        reduce_loss(strategy.loss(draft, batch, StepContext(step=step, total_steps=150))).backward()
        opt.step()
    return strategy, draft.eval(), request, prompts


def decode(engine, strategy, draft, request, prompts, **how):
    return [speculative_generate(engine, strategy, draft, p, request, max_new_tokens=MAX_NEW, stop_ids=(), **how)
            for p in prompts]


@pytest.mark.parametrize("shape", [TreeShape(3, 2, 6), TreeShape(4, 3, 12), TreeShape(2, 4, 21)])
def test_tree_decoding_with_an_eagle3_draft_is_the_targets_greedy_output(engine, trained, shape):
    strategy, draft, request, prompts = trained
    traces = decode(engine, strategy, draft, request, prompts, k=shape.num_steps, tree=shape)
    check_lossless(engine, prompts, traces, MAX_NEW)
    assert all(len(t.tokens) == MAX_NEW for t in traces)
    assert max(max(t.accepted) for t in traces) >= 2, "the trained draft should get whole paths accepted"


def test_a_top1_tree_is_the_chain_the_draft_proposes(engine, trained):
    strategy, draft, request, prompts = trained
    prompt = prompts[0]
    accepted = prompt + engine.generate([prompt], 12)[0]
    features = engine.capture([Sample("p", tuple(accepted), (0,) * len(accepted))], request)[0]
    for n in (len(prompt) + 1, len(prompt) + 5, len(accepted)):
        chain = strategy.propose(draft, None, accepted[:n], features, 4)
        tree = strategy.propose_tree(draft, None, accepted[:n], features, TreeShape(4, 1, 5))
        assert tree.tokens == tuple(chain) and tree.parents == (-1, 0, 1, 2)


def test_a_depth_one_top4_tree_never_needs_more_rounds_than_the_one_token_chain(engine, trained):
    """Guaranteed: at every position the tree holds the chain's token (the draft's top-1) among its
    top 4, so the tree accepts wherever the chain does, and fewer rounds from a later position is
    never more rounds (induction from the end). Deeper trees promise no such thing: a beam of the
    greedy chain can lose its place to another branch's children."""
    strategy, draft, request, prompts = trained
    chain = decode(engine, strategy, draft, request, prompts, k=1)
    tree = decode(engine, strategy, draft, request, prompts, k=1, tree=TreeShape(1, 4, 5))
    check_lossless(engine, prompts, tree, MAX_NEW)
    rounds_chain = [len(t.accepted) for t in chain]
    rounds_tree = [len(t.accepted) for t in tree]
    assert all(t <= c for t, c in zip(rounds_tree, rounds_chain)), (rounds_tree, rounds_chain)
    assert sum(rounds_tree) < sum(rounds_chain), "the top-4 alternatives should be accepted somewhere"
    assert summarize(tree, 1).tau > summarize(chain, 1).tau


class Recording:
    """The strategy, recording every proposal and how many positions each step 0 ran over."""

    def __init__(self, strategy, draft):
        self.inner, self.name = strategy, strategy.name
        self.proposals: list = []
        self.step0_rows: list[int] = []
        original = draft.fuse

        def fuse(features):
            self.step0_rows.append(features.shape[1])
            return original(features)

        draft.fuse = fuse

    def begin_decode(self, draft, prompt_ids, features):
        return self.inner.begin_decode(draft, prompt_ids, features)

    def propose(self, draft, state, accepted_ids, features, k):
        self.proposals.append(self.inner.propose(draft, state, accepted_ids, features, k))
        return self.proposals[-1]

    def propose_tree(self, draft, state, accepted_ids, features, shape):
        self.proposals.append(self.inner.propose_tree(draft, state, accepted_ids, features, shape))
        return self.proposals[-1]


@pytest.mark.parametrize("tree", [None, TreeShape(3, 2, 6)], ids=["chain", "tree"])
def test_the_draft_kv_cache_proposes_what_rerunning_the_prefix_proposes(engine, trained, tree):
    _, draft, request, prompts = trained
    prompts = prompts[:3]
    runs = {}
    for cached in (True, False):
        recorder = Recording(Eagle3Strategy(Eagle3Options(ttt_length=3, draft_kv_cache=cached)), draft)
        try:
            traces = decode(engine, recorder, draft, request, prompts, k=3, tree=tree)
        finally:
            del draft.fuse
        runs[cached] = (recorder, traces)
    (with_cache, traces), (without, reference) = runs[True], runs[False]
    assert with_cache.proposals == without.proposals
    assert [t.tokens for t in traces] == [t.tokens for t in reference]
    # without the cache step 0 runs over the whole prefix each round; with it, over the new positions only
    full = without.step0_rows
    new = [full[0], *(b - a if b > a else b for a, b in pairwise(full))]  # a new prompt starts over
    assert with_cache.step0_rows == new
    assert max(new) < max(full) / 4


def test_asking_twice_without_new_tokens_proposes_the_same(engine, trained):
    strategy, draft, request, prompts = trained
    prompt = prompts[1]
    accepted = prompt + engine.generate([prompt], 6)[0]
    features = engine.capture([Sample("p", tuple(accepted), (0,) * len(accepted))], request)[0]
    state = strategy.begin_decode(draft, prompt, features)
    first = strategy.propose(draft, state, accepted, features, 4)
    assert strategy.propose(draft, state, accepted, features, 4) == first
    assert strategy.propose(draft, None, accepted, features, 4) == first
