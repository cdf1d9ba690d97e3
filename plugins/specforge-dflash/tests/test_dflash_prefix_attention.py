"""The prefix attention backend equals textbook dense attention, values and gradients, and keeps no
score-sized tensor for backward."""

from __future__ import annotations

import pytest
import torch
from test_dflash_masks import reference_visibility

from specforge.contracts import StepContext
from specforge.testing.synthetic import synthetic_features, synthetic_ids, synthetic_samples, tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.attention import _flex_block_mask, flex_block_attention, plan_attention
from specforge_dflash.mask import grouped_context_hidden
from specforge_dflash.options import DFlashOptions
from specforge_dflash.prefix_attention import plan_prefix, prefix_attention
from specforge_dflash.strategy import DFlashStrategy

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def dense_reference(q, k_ctx, v_ctx, k_blk, v_blk, visible, scale):
    """Softmax over [context ; all block slots] under a dense [B, Q, S + Q] mask, kv heads repeated.

    Rows without a visible key output zeros and get zero gradients (no NaN on either pass).
    """
    rep = q.shape[1] // k_ctx.shape[1]
    k = torch.cat([k_ctx, k_blk], 2).repeat_interleave(rep, 1)  # [B, Hq, S + Q, D]
    v = torch.cat([v_ctx, v_blk], 2).repeat_interleave(rep, 1)
    visible = visible[:, None]  # [B, 1, Q, S + Q]
    any_key = visible.any(-1, keepdim=True)
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~visible & any_key, float("-inf"))  # empty rows stay finite...
    probs = torch.softmax(scores, -1) * any_key  # ...and are zeroed
    return probs @ v


# anchors, keep, S, bs, heads, kv heads: padding blocks, unsorted anchors, anchor 0, the last
# position, repeated anchors, GQA, odd lengths
CASES = [
    ([[2, 5, 9], [0, 7, 0]], [[True, True, True], [True, True, False]], 11, 4, 4, 2),
    ([[6, 2, 3, 3, 0]], [[True, True, False, True, True]], 9, 5, 2, 2),
    ([[0, 1, 4, 8, 9, 12, 12]], [[True] * 7], 13, 3, 6, 2),
    ([[1, 3], [4, 6], [2, 0]], [[True, True], [True, True], [True, False]], 7, 2, 3, 1),
    ([[5, 0, 0]], [[True, False, False]], 6, 4, 2, 1),
    ([[3, 5], [0, 0]], [[True, True], [False, False]], 8, 3, 2, 2),  # a sample without any kept block
]


def _tensors(B, Hq, Hkv, S, Q, D=8, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    return r(B, Hq, Q, D), r(B, Hkv, S, D), r(B, Hkv, S, D), r(B, Hkv, Q, D), r(B, Hkv, Q, D)


def _query_rows(N, bs, first_slot):
    """Rows n·bs + j (j >= first_slot) of the dense layout, in the order prefix attention returns them."""
    return torch.tensor([n * bs + j for n in range(N) for j in range(first_slot, bs)])


@pytest.mark.parametrize("first_slot", [0, 1])
@pytest.mark.parametrize("group_rows", [1, 6, 1000])
@pytest.mark.parametrize("window", [None, 1, 3])
@pytest.mark.parametrize(("anchors", "keep", "S", "bs", "Hq", "Hkv"), CASES)
def test_prefix_attention_equals_dense_attention_in_values_and_gradients(anchors, keep, S, bs, Hq, Hkv, window,
                                                                         group_rows, first_slot):
    a, kp = torch.tensor(anchors), torch.tensor(keep)
    B, N = a.shape
    q, *keys = _tensors(B, Hq, Hkv, S, N * bs)
    D = q.shape[-1]
    rows = _query_rows(N, bs, first_slot)
    q_rows = q[:, :, rows].detach().requires_grad_()  # the queries of slots >= first_slot
    got = prefix_attention(q_rows, *keys, plan_prefix(a, kp, bs, group_rows), bs, window, D ** -0.5, first_slot)
    expected = dense_reference(q, *keys, reference_visibility(anchors, keep, S, bs, window), D ** -0.5)[:, :, rows]
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    unkept = ~kp.repeat_interleave(bs - first_slot, 1)  # [B, Q']
    if unkept.any():
        assert got.detach().permute(0, 2, 1, 3)[unkept].abs().max().item() == 0
    grad = torch.randn_like(got)
    g_got = torch.autograd.grad(got, [q_rows, *keys], grad)
    g_ref = list(torch.autograd.grad(expected, [q, *keys], grad))
    g_ref[0] = g_ref[0][:, :, rows]
    for x, y in zip(g_got, g_ref):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_prefix_attention_equals_eager_flex_attention():
    a, kp = torch.tensor([[2, 5, 9], [0, 7, 0]]), torch.tensor([[True, True, True], [True, True, False]])
    S, bs = 11, 4
    inputs = [t.detach() for t in _tensors(2, 4, 2, S, 3 * bs, seed=1)]
    for window in (None, 3):
        flex = flex_block_attention(*inputs, _flex_block_mask(a, kp, S, bs, window), 8 ** -0.5)
        got = prefix_attention(*inputs, plan_prefix(a, kp, bs, 4), bs, window, 8 ** -0.5)
        torch.testing.assert_close(got, flex, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_slot", [0, 1])
@pytest.mark.parametrize("window", [None, 2])
def test_grouped_context_hidden_is_the_context_rule_on_each_blocks_columns(window, first_slot):
    anchors, starts, S, bs, width = [1, 4, 6, 9], [0, 0, 5, 3], 12, 3, 6
    hidden = grouped_context_hidden(torch.tensor(anchors), torch.tensor(starts), width, bs, window, first_slot)
    dense = reference_visibility([anchors], [[True] * 4], S, bs, window)[0]  # [N·bs, S + N·bs]
    expected = torch.tensor([[not dense[m * bs + j, starts[m] + c] for c in range(width)]
                             for m in range(4) for j in range(first_slot, bs)])
    assert torch.equal(hidden, expected)


def test_the_plan_sorts_kept_blocks_by_anchor_and_groups_them():
    a = torch.tensor([[9, 2, 5, 0, 7]])
    kp = torch.tensor([[True, True, True, False, True]])
    (sample,) = plan_prefix(a, kp, block_size=2, group_rows=4)
    assert sample.anchors.tolist() == [2, 5, 7, 9]
    assert sample.blocks.tolist() == [1, 2, 4, 0] and not sample.in_order
    assert sample.rows(2).tolist() == [2, 3, 4, 5, 8, 9, 0, 1]
    (ordered,) = plan_prefix(torch.tensor([[2, 5, 0]]), torch.tensor([[True, True, False]]), 2, 4)
    assert ordered.in_order and ordered.rows(2) is None  # the first rows: no gather
    assert [(g.start, g.stop, g.first_anchor, g.last_anchor) for g in sample.groups] == [(0, 2, 2, 5), (2, 4, 7, 9)]


def _draft(attention, **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    strategy = DFlashStrategy(DFlashOptions(block_size=4, num_anchors=12, attention=attention, **options))
    torch.manual_seed(0)
    return info, strategy, strategy.build_draft(info, None)


@pytest.mark.parametrize("layer_options", [{}, {"num_draft_layers": 2, "sliding_window": 3,
                                                "layer_types": ("sliding_attention", "full_attention")}])
def test_the_draft_gives_the_same_loss_and_gradients_with_prefix_and_blockwise_attention(layer_options):
    results = []
    for attention in ("prefix", "blockwise"):
        info, strategy, draft = _draft(attention, **layer_options)
        batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=(41, 18, 7)))
        out = strategy.loss(draft, batch, StepContext(step=2, total_steps=10))
        loss = out.terms[0] / out.terms[1]
        loss.backward()
        results.append((loss.detach(), [p.grad for p in draft.parameters() if p.requires_grad]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=0)
    for got, expected in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("first_slot", [0, 1])
def test_the_draft_gives_the_same_hidden_states_with_prefix_and_eager_flex_attention(first_slot):
    options = {"num_draft_layers": 2, "sliding_window": 3, "layer_types": ("sliding_attention", "full_attention")}
    (info, _, prefix), (_, _, flex) = _draft("prefix", **options), _draft("flex", **options)
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, info.vocab_size - 1, (2, 14), generator=gen)
    feats = torch.randn(2, 14, prefix.config.context_width, generator=gen, dtype=torch.float64)
    anchors, keep = torch.tensor([[1, 5, 9], [2, 6, 0]]), torch.tensor([[True, True, True], [True, True, False]])
    blocks = noise_blocks(ids, anchors, keep, 4, prefix.config.mask_token_id)
    with torch.no_grad():  # flex attention has no backward on CPU
        got = prefix.hidden(feats, blocks, anchors, keep, first_slot)
        expected = flex.hidden(feats, blocks, anchors, keep, first_slot)
    assert got.shape == (2, 3 * (4 - first_slot), 32)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_auto_picks_prefix_attention_off_cuda():
    plan = plan_attention(torch.tensor([[3, 7]]), torch.tensor([[True, True]]), 12, 4, {"full_attention": None}, "auto")
    assert plan.backend == "prefix"


def saved_numels(strategy, draft, batch) -> list[int]:
    """Element counts of every tensor autograd saves for backward during one loss."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = strategy.loss(draft, batch, StepContext(step=0, total_steps=10))
    (out.terms[0] / out.terms[1]).backward()
    return sizes


def test_no_saved_tensor_is_as_large_as_the_scores():
    S, N, bs = 512, 64, 4
    info = tiny_target_info(hidden_size=32, vocab_size=48, num_attention_heads=4)
    largest = {}
    for attention in ("prefix", "blockwise"):
        strategy = DFlashStrategy(DFlashOptions(block_size=bs, num_anchors=N, attention=attention))
        ids = synthetic_ids(S, info, seed=0)
        batch = strategy.collate([synthetic_features(info, strategy.feature_request(info), ids, [1] * S)])
        torch.manual_seed(0)
        largest[attention] = max(saved_numels(strategy, strategy.build_draft(info, None), batch))
    bound = min(S * S, N * bs * S)  # one score per (query, context key), or S² of anything
    assert largest["prefix"] <= bound // 4, largest  # the largest: MLP activations [N·bs, intermediate]
    assert largest["blockwise"] >= bound  # the hooks do see the probabilities the old backend keeps
