"""The midlayer's RMSNorm function computes exactly what the RMSNorm module computes, with the
same gradients (float64), keeps no normalised copy for backward, and follows bf16 autocast."""

from __future__ import annotations

import torch

from specforge.nn.norm import RMSNorm
from specforge_eagle3.norm import rms_norm


def case(dtype=torch.float64):
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(16, dtype=dtype))
    x = (3 * torch.randn(2, 7, 16, dtype=dtype)).requires_grad_()
    return norm, x


def test_rms_norm_equals_the_module_with_gradients() -> None:
    norm, x = case()
    got, want = rms_norm(norm, x), norm(x)
    assert torch.equal(got, want)  # the same operations in the same order
    weight = torch.randn(2, 7, 16, dtype=torch.float64)
    for g, w in zip(torch.autograd.grad((got * weight).sum(), [x, norm.weight]),
                    torch.autograd.grad((want * weight).sum(), [x, norm.weight])):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-13)


def test_rms_norm_keeps_only_its_input_and_the_inverse_rms() -> None:
    norm, x = case()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        rms_norm(norm, x)
    wide = [t for t in saved if t.shape == x.shape]
    assert len(wide) == 1 and wide[0].untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


def test_rms_norm_of_bf16_input_matches_the_module() -> None:
    norm, x = case(torch.float32)
    xb = x.detach().bfloat16().requires_grad_()
    got, want = rms_norm(norm, xb), norm(xb)
    assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want)
    g_got = torch.autograd.grad(got.sum(), [xb, norm.weight])
    g_want = torch.autograd.grad(want.sum(), [xb, norm.weight])
    for g, w in zip(g_got, g_want):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g.float(), w.float(), rtol=0.02, atol=0.02)
