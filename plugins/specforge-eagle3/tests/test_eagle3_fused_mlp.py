"""The midlayer MLP's own autograd function equals the SwiGLU module it replaces (values and
gradients, float64), keeps less for backward, and follows bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from specforge.nn.mlp import SwiGLUMLP
from specforge_eagle3 import mlp as mlp_module
from specforge_eagle3.mlp import gated_mlp


def case(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    mlp = SwiGLUMLP(16, 40, "silu").to(dtype)
    x = torch.randn(3, 7, 16, dtype=dtype, requires_grad=True)
    return mlp, x


@pytest.mark.parametrize("rows_per_chunk", [1, 5, 10**4])
def test_gated_mlp_equals_the_module_with_gradients(monkeypatch, rows_per_chunk) -> None:
    monkeypatch.setattr(mlp_module, "CHUNK_ELEMENTS", rows_per_chunk * 40)  # I = 40
    mlp, x = case()
    weight = torch.randn(3, 7, 16, dtype=torch.float64)
    got = gated_mlp(mlp, x, "silu")
    want = mlp(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    inputs = [x, *mlp.parameters()]
    for g, w in zip(torch.autograd.grad((got * weight).sum(), inputs),
                    torch.autograd.grad((want * weight).sum(), inputs)):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-12)


def test_gated_mlp_keeps_two_of_the_four_intermediate_tensors() -> None:
    mlp, x = case()
    counts = []
    for fn in (lambda: gated_mlp(mlp, x, "silu"), lambda: mlp(x)):
        wide = set()

        def pack(t, wide=wide):
            if t.numel() % 21 == 0 and t.shape[-1] >= 40:  # [B·S, I] or [B·S, 2I] activations (B·S = 21)
                wide.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        counts.append(len(wide))
    assert counts[0] == 1 and counts[1] >= 3, counts  # one [B, S, 2I] tensor instead of 3-4 [B, S, I]


def test_other_activations_use_the_module() -> None:
    torch.manual_seed(0)
    mlp = SwiGLUMLP(8, 12, "gelu").double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(gated_mlp(mlp, x, "gelu"), mlp(x), rtol=0, atol=0)


def test_gated_mlp_under_bf16_autocast_stays_close_to_fp32() -> None:
    mlp, x = case(dtype=torch.float32, seed=1)
    want = mlp(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gated_mlp(mlp, x, "silu")
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=0.05, atol=0.02)
    g_got = torch.autograd.grad(got.float().sum(), [x, mlp.gate_proj.weight])
    g_want = torch.autograd.grad(want.sum(), [x, mlp.gate_proj.weight])
    for g, w in zip(g_got, g_want):
        assert g.dtype == w.dtype and (g - w).norm() / w.norm() < 0.05
