"""Block attention equals dense masked attention, on both backends, and the draft sees what it should."""

from __future__ import annotations

import pytest
import torch
from test_dflash_masks import reference_visibility

from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.attention import _flex_block_mask, blockwise_attention, flex_block_attention
from specforge_dflash.mask import block_visibility, context_visibility
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy

# The CPU tests run flex attention's eager reference on purpose: they check the predicate.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def dense_attention(q, k, v, visible, scale):
    """Textbook attention over all keys with a dense boolean mask; rows without keys give zeros."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    scores = (q @ k.transpose(-1, -2)) * scale  # [B, H, Q, K]
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    probs = torch.softmax(scores, -1).nan_to_num(0.0)
    return probs @ v


@pytest.mark.parametrize("window", [None, 3])
def test_blockwise_and_flex_attention_equal_dense_masked_attention(window):
    gen = torch.Generator().manual_seed(0)
    B, Hq, Hkv, D, S, bs = 2, 4, 2, 8, 11, 4
    anchors = [[2, 5, 9], [0, 7, 0]]
    keep = [[True, True, True], [True, True, False]]
    N = 3
    a, kp = torch.tensor(anchors), torch.tensor(keep)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    q, k_ctx, v_ctx, k_blk, v_blk = r(B, Hq, N * bs, D), r(B, Hkv, S, D), r(B, Hkv, S, D), \
        r(B, Hkv, N * bs, D), r(B, Hkv, N * bs, D)
    expected = dense_attention(q, torch.cat([k_ctx, k_blk], 2), torch.cat([v_ctx, v_blk], 2),
                               reference_visibility(anchors, keep, S, bs, window), D ** -0.5)
    ctx_vis = context_visibility(a, kp, S, bs, window)
    blk_vis = block_visibility(kp, bs, causal=window is not None)
    got = blockwise_attention(q, k_ctx, v_ctx, k_blk, v_blk, ctx_vis, blk_vis, D ** -0.5)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert got[1, :, 2 * bs:].abs().max() == 0  # the unkept block outputs zeros
    flex = flex_block_attention(q, k_ctx, v_ctx, k_blk, v_blk, _flex_block_mask(a, kp, S, bs, window), D ** -0.5)
    torch.testing.assert_close(flex, expected, rtol=1e-10, atol=1e-12)


def _draft(attention="blockwise", **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    opts = DFlashOptions(block_size=4, num_draft_layers=2, attention=attention, **options)
    torch.manual_seed(0)
    return info, DFlashStrategy(opts).build_draft(info, None)


def _inputs(info, draft, anchors, S=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, info.vocab_size - 1, (1, S), generator=gen)
    feats = torch.randn(1, S, draft.config.context_width, generator=gen, dtype=torch.float64)
    a = torch.tensor([anchors])
    keep = torch.ones_like(a, dtype=torch.bool)
    return ids, feats, a, keep, noise_blocks(ids, a, keep, 4, draft.config.mask_token_id)


@pytest.mark.parametrize("layer_options", [{}, {"layer_types": ("sliding_attention", "full_attention"),
                                                "sliding_window": 3}])
def test_the_draft_gives_the_same_hidden_states_on_both_backends(layer_options):
    info, blockwise = _draft("blockwise", **layer_options)
    _, flex = _draft("flex", **layer_options)
    _, feats, a, keep, blocks = _inputs(info, blockwise, [1, 4, 8])
    with torch.no_grad():  # flex attention has no backward on CPU
        got = flex.hidden(feats, blocks, a, keep)
        expected = blockwise.hidden(feats, blocks, a, keep)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_a_block_reads_only_context_before_its_anchor_and_never_another_block():
    info, draft = _draft()
    _ids, feats, a, keep, blocks = _inputs(info, draft, [3, 7])
    base = draft.hidden(feats, blocks, a, keep).view(2, 4, -1)
    later = feats.clone()
    later[0, 3:] += 1.0  # the anchor's own feature and everything after it
    out = draft.hidden(later, blocks, a, keep).view(2, 4, -1)
    assert torch.equal(out[0], base[0])  # block at anchor 3 is blind to positions >= 3
    assert not torch.allclose(out[1], base[1])  # block at anchor 7 sees positions 3..6
    other = blocks.clone()
    other[0, 4] = (other[0, 4] + 1) % (info.vocab_size - 1)  # the second block's anchor token
    out = draft.hidden(feats, other, a, keep).view(2, 4, -1)
    assert torch.equal(out[0], base[0]) and not torch.allclose(out[1], base[1])
