"""The fused TTT attention (both backends) equals the dense definition, values and gradients, in
float64: batches of several samples, odd lengths, grouped-query heads, 0..k diagonal keys, right
padding (what collate makes), arbitrary key padding, and the one-query drafting step."""

from __future__ import annotations

import pytest
import torch

from specforge.nn.attention import repeat_kv
from specforge_eagle3.attention import diagonal_attention, extend_keys, ttt_attention

BACKENDS = ("merge", "sink")


def tensors(b, h, hkv, sq, sk, d, k, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()

    q = rand(b, h, sq, d)
    k0, v0 = rand(b, hkv, sk, d), rand(b, hkv, sk, d)
    ek = [rand(b, hkv, sq, d) for _ in range(k)]
    ev = [rand(b, hkv, sq, d) for _ in range(k)]
    return q, k0, v0, ek, ev


def dense(q, k0, v0, ek, ev, mask):
    rep = q.shape[1] // k0.shape[1]
    return diagonal_attention(q, repeat_kv(k0, rep), repeat_kv(v0, rep), [repeat_kv(t, rep) for t in ek],
                              [repeat_kv(t, rep) for t in ev], mask)


def assert_same(fused, reference, inputs, rows):
    """Equal outputs on ``rows`` [B, Sq] and equal gradients of a random loss read on those rows."""
    keep = rows[:, None, :, None].expand_as(reference)
    torch.testing.assert_close(fused[keep], reference[keep], rtol=1e-11, atol=1e-12)
    weight = torch.randn(reference.shape, generator=torch.Generator().manual_seed(1), dtype=reference.dtype)
    weight = weight * keep
    got = torch.autograd.grad((fused * weight).sum(), inputs, allow_unused=True)
    want = torch.autograd.grad((reference * weight).sum(), inputs)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g if g is not None else torch.zeros_like(w), w, rtol=1e-10, atol=1e-11,
                                   msg=lambda m, i=i: f"gradient of input {i}: {m}")


def causal(valid: torch.Tensor) -> torch.Tensor:
    s = valid.shape[1]
    return torch.ones(s, s, dtype=torch.bool).tril()[None, None] & valid[:, None, None, :]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 2, 6])
@pytest.mark.parametrize(("h", "hkv"), [(4, 4), (4, 2), (6, 1)])
def test_fused_ttt_attention_equals_the_dense_definition(backend, k, h, hkv) -> None:
    b, s, d = 3, 13, 8
    q, k0, v0, ek, ev = tensors(b, h, hkv, s, s, d, k, seed=k + h)
    valid = torch.ones(b, s, dtype=torch.bool)
    got = ttt_attention(q, k0, v0, ek, ev, backend=backend)
    assert_same(got, dense(q, k0, v0, ek, ev, causal(valid)), [q, k0, v0, *ek, *ev], valid)


@pytest.mark.parametrize("backend", BACKENDS)
def test_right_padding_needs_no_mask_at_real_positions(backend) -> None:
    """collate right-pads: real queries see only real keys under the causal mask alone."""
    b, h, hkv, s, d = 3, 4, 2, 11, 8
    q, k0, v0, ek, ev = tensors(b, h, hkv, s, s, d, 3, seed=4)
    valid = torch.arange(s)[None] < torch.tensor([11, 7, 4])[:, None]
    got = ttt_attention(q, k0, v0, ek, ev, backend=backend)
    assert_same(got, dense(q, k0, v0, ek, ev, causal(valid)), [q, k0, v0, *ek, *ev], valid)


@pytest.mark.parametrize(("k", "layout"), [(0, "holes"), (3, "holes"), (3, "left")])
def test_a_key_mask_hides_any_padded_key(k, layout) -> None:
    """Left padding and holes (not what collate makes) go through the sink backend's key bias.
    (Without diagonal keys a left-padded row sees nothing: the dense definition is NaN there.)"""
    b, h, hkv, s, d = 2, 4, 2, 9, 8
    q, k0, v0, ek, ev = tensors(b, h, hkv, s, s, d, k, seed=7)
    rows = {"holes": [[1, 1, 0, 1, 1, 0, 0, 1, 1], [1, 0, 1, 1, 0, 1, 1, 1, 0]],
            "left": [[0, 0, 0, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1, 1]]}[layout]
    valid = torch.tensor(rows, dtype=torch.bool)
    got = ttt_attention(q, k0, v0, ek, ev, key_mask=valid)
    everywhere = torch.ones(b, s, dtype=torch.bool)
    assert_same(got, dense(q, k0, v0, ek, ev, causal(valid)), [q, k0, v0, *ek, *ev], everywhere)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_query_is_the_last_row_and_sees_every_step0_key(backend) -> None:
    """Drafting after step 0: one query per step, at the position after the n step-0 keys."""
    b, h, hkv, n, d = 1, 4, 2, 7, 8
    q, k0, v0, ek, ev = tensors(b, h, hkv, 1, n, d, 3, seed=9)
    got = ttt_attention(q, k0, v0, ek, ev, backend=backend)
    sees_all = torch.ones(1, 1, 1, n, dtype=torch.bool)
    assert_same(got, dense(q, k0, v0, ek, ev, sees_all), [q, k0, v0, *ek, *ev], torch.ones(1, 1, dtype=torch.bool))


def test_kept_extended_keys_give_the_same_result() -> None:
    q, k0, v0, ek, ev = tensors(2, 4, 2, 9, 9, 8, 2, seed=3)
    fresh = ttt_attention(q, k0, v0, ek, ev, backend="sink")
    kept = ttt_attention(q, k0, v0, ek, ev, extended=extend_keys(k0, v0, None, q.dtype), backend="sink")
    torch.testing.assert_close(kept, fresh, rtol=0, atol=0)


def test_the_merge_backend_refuses_a_key_mask() -> None:
    q, k0, v0, ek, ev = tensors(1, 2, 2, 5, 5, 8, 1)
    with pytest.raises(ValueError, match="sink"):
        ttt_attention(q, k0, v0, ek, ev, key_mask=torch.ones(1, 5, dtype=torch.bool), backend="merge")


def test_queries_must_be_all_rows_or_the_last_row() -> None:
    q, k0, v0, ek, ev = tensors(1, 2, 2, 3, 5, 8, 1)
    with pytest.raises(ValueError, match="Sq == Sk"):
        ttt_attention(q, k0, v0, ek, ev)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_autocast_stays_close_to_fp32(backend) -> None:
    """The CUDA recipe (bf16 autocast) on CPU: kernels in bf16, softmax statistics in fp32."""
    b, h, hkv, s, d = 2, 4, 2, 40, 16
    q, k0, v0, ek, ev = tensors(b, h, hkv, s, s, d, 3, seed=5, dtype=torch.float32)
    reference = dense(q, k0, v0, ek, ev, causal(torch.ones(b, s, dtype=torch.bool)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = ttt_attention(q, k0, v0, ek, ev, backend=backend)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), reference, rtol=0.05, atol=0.05)
    grad = torch.autograd.grad(got.float().sum(), q)[0]
    want = torch.autograd.grad(reference.sum(), q)[0]
    assert torch.isfinite(grad).all()
    assert (grad - want).norm() / want.norm() < 0.05
