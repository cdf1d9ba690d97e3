"""Tree drafting: the target verifies a tree in one pass exactly as it would each path alone,
SGLang's top-k tree is built as specified, and tree decoding is lossless with τ counted per path."""

from __future__ import annotations

import random

import pytest
import torch

from specforge.contracts import DraftTree, FeatureRequest, TreeShape
from specforge.errors import UserError
from specforge.evaluation.speculative import check_lossless, speculative_generate, summarize
from specforge.evaluation.tree import accepted_path, check_shape, topk_tree

REQUEST = FeatureRequest(layers=(0,), last_hidden=True)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from specforge.engines.hf import HFEngine, HFEngineOptions
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=2, hidden=32, heads=2, kv_heads=1, seed=3, initializer_range=0.2)
    eng = HFEngine(HFEngineOptions(), model_path=str(path), dtype="float64", device="cpu")
    yield eng
    eng.close()


def random_tree(rng: random.Random, n: int, vocab: int) -> DraftTree:
    parents = [-1] + [rng.randrange(-1, i) for i in range(1, n)]
    return DraftTree(tokens=tuple(rng.randrange(vocab) for _ in range(n)), parents=tuple(parents))


def path_to(tree: DraftTree, node: int) -> list[int]:
    out = []
    while node >= 0:
        out.append(tree.tokens[node])
        node = tree.parents[node]
    return out[::-1]


def alone(engine, ids):
    session = engine.decode_session(REQUEST)
    try:
        return session.extend(ids)
    finally:
        session.close()


def test_one_tree_pass_scores_every_node_as_its_path_run_alone(engine):
    rng = random.Random(0)
    prompt = [5, 17, 42, 8, 3]
    tree = random_tree(rng, 9, 200)
    session = engine.decode_session(REQUEST)
    session.extend(prompt[:-1])
    rows = session.extend_tree([prompt[-1], *tree.tokens], [-1, *(p + 1 for p in tree.parents)])
    session.close()
    assert rows["logits"].shape[0] == 10
    for node in range(len(tree.tokens)):
        ref = alone(engine, prompt + path_to(tree, node))
        for name in ("logits", "hidden_states", "last_hidden"):
            torch.testing.assert_close(rows[name][node + 1], ref[name][-1], rtol=0, atol=1e-10)


def test_keeping_a_path_leaves_the_cache_as_if_only_that_path_had_run(engine):
    rng = random.Random(1)
    prompt = [9, 4, 4, 120]
    tree = random_tree(rng, 7, 200)
    deepest = max(range(7), key=lambda i: len(path_to(tree, i)))
    nodes, at = [], deepest
    while at >= 0:
        nodes.append(at)
        at = tree.parents[at]
    nodes = nodes[::-1]
    session = engine.decode_session(REQUEST)
    session.extend(prompt[:-1])
    session.extend_tree([prompt[-1], *tree.tokens], [-1, *(p + 1 for p in tree.parents)])
    session.keep([0, *(i + 1 for i in nodes)])
    assert session.length == len(prompt) + len(nodes)
    after = session.extend([77, 78])
    session.close()
    ref = alone(engine, prompt + [tree.tokens[i] for i in nodes] + [77, 78])
    torch.testing.assert_close(after["logits"], ref["logits"][-2:], rtol=0, atol=1e-10)


def table_expand(table):
    """A next-token function from a dict path -> {token: probability} (the rest share what is left)."""
    def expand(paths):
        out = torch.full((len(paths), 10), -50.0, dtype=torch.float64)
        for row, path in enumerate(paths):
            for tok, prob in table.get(tuple(path), {}).items():
                out[row, tok] = torch.tensor(prob, dtype=torch.float64).log()
        return out
    return expand


def test_topk_tree_keeps_the_best_beams_per_step_and_the_best_nodes_overall():
    # root -> 1 (0.6), 2 (0.3); after 1: 3 (0.5), 4 (0.4); after 2: 5 (0.9), 6 (0.05)
    table = {(): {1: 0.6, 2: 0.3}, (1,): {3: 0.5, 4: 0.4}, (2,): {5: 0.9, 6: 0.05},
             (1, 3): {7: 0.9}, (2, 5): {8: 0.8}, (1, 4): {9: 0.2}}
    tree = topk_tree(table_expand(table), TreeShape(num_steps=3, topk=2, num_draft_tokens=6))
    # step 2 children scores: 1-3 .30, 1-4 .24, 2-5 .27, 2-6 .015 -> beams 1-3, 2-5
    # step 3: 1-3-7 .27, 2-5-8 .216 (and each beam's second child at e^-50)
    # best 5 of {1 .6, 2 .3, 1-3 .30, 1-4 .24, 2-5 .27, 2-6 .015, 1-3-7 .27, 2-5-8 .216, ...}
    # = 1, 1-3, 2, 2-5 (.27, expanded before 1-3-7), 1-3-7
    paths = sorted(tuple(path_to(tree, i)) for i in range(len(tree.tokens)))
    assert paths == sorted([(1,), (2,), (1, 3), (2, 5), (1, 3, 7)])
    assert all(p < i for i, p in enumerate(tree.parents)), "parents come first"


def test_topk_one_is_the_greedy_chain():
    table = {(): {4: 0.7}, (4,): {2: 0.6}, (4, 2): {9: 0.8}}
    tree = topk_tree(table_expand(table), TreeShape(num_steps=3, topk=1, num_draft_tokens=4))
    assert tree == DraftTree(tokens=(4, 2, 9), parents=(-1, 0, 1))


def test_a_tree_larger_than_the_expansion_is_refused_with_the_largest_that_fits():
    with pytest.raises(UserError, match="at most 11"):
        check_shape(TreeShape(num_steps=3, topk=2, num_draft_tokens=12))


def test_the_accepted_path_follows_the_targets_choices_from_the_root():
    tree = DraftTree(tokens=(5, 6, 7, 8), parents=(-1, -1, 1, 2))
    # target after root: 6; after node0: -, after node1 (6): 7; after node2 (7): 1 (not 8)
    assert accepted_path(tree, [6, 0, 7, 1, 0]) == [1, 2]
    assert accepted_path(tree, [9, 0, 0, 0, 0]) == []


PROMPTS = [[5, 17, 42, 8], [100, 3, 9]]
MAX_NEW = 16
SHAPE = TreeShape(num_steps=3, topk=2, num_draft_tokens=7)


class OracleTree:
    """A two-branch tree per round: a wrong chain first, then the target's own continuation."""

    name = "oracle-tree"

    def __init__(self, engine):
        self.greedy = {tuple(p): g for p, g in zip(PROMPTS, engine.generate(PROMPTS, 64))}

    def begin_decode(self, draft, prompt_ids, features):
        return tuple(prompt_ids)

    def propose(self, draft, state, accepted_ids, features, k):
        raise AssertionError("tree decoding must not ask for chains")

    def propose_tree(self, draft, state, accepted_ids, features, shape):
        assert features["last_hidden"].shape[0] == len(accepted_ids) - 1
        done = len(accepted_ids) - len(state)
        right = self.greedy[state][done:done + shape.num_steps]
        wrong = [(t + 1) % 200 for t in right]
        tokens = (*wrong, *right)
        n = len(right)
        parents = (-1, *range(0, n - 1), -1, *range(n, 2 * n - 1))
        return DraftTree(tokens=tokens, parents=parents)


def test_tree_decoding_is_lossless_and_accepts_the_right_branch_in_full(engine):
    oracle = OracleTree(engine)
    traces = [speculative_generate(engine, oracle, None, p, REQUEST, k=SHAPE.num_steps, max_new_tokens=MAX_NEW,
                                   tree=SHAPE) for p in PROMPTS]
    check_lossless(engine, PROMPTS, traces, MAX_NEW)
    for trace in traces:
        assert trace.tokens == oracle.greedy[tuple(PROMPTS[traces.index(trace)])][:MAX_NEW]
        # 1 token from the prefill, then 4 per round (3 accepted + the target's next): 1 + 4 + 4 + 4 + 3
        assert trace.accepted[:3] == [3, 3, 3]
    result = summarize(traces, SHAPE.num_steps)
    assert result.tau > 3.5


def test_a_chain_strategy_asked_for_a_tree_is_refused_in_one_line(engine):
    class Chain:
        name = "chainy"

        def begin_decode(self, draft, prompt_ids, features):
            return None

        def propose(self, draft, state, accepted_ids, features, k):
            return [1] * k

    with pytest.raises(UserError, match=r"drafts chains, not trees: set eval\.topk = 1"):
        speculative_generate(engine, Chain(), None, PROMPTS[0], REQUEST, k=3, max_new_tokens=4, tree=SHAPE)
