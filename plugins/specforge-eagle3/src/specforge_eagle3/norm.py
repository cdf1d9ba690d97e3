"""RMSNorm as one autograd function: the module's autograd graph keeps its normalised output
[B, S, H] for the weight's gradient, four times per TTT step; this keeps only the input (which
the step keeps anyway) and the [B, S, 1] inverse RMS. Forward computes exactly what
``specforge.api.nn.RMSNorm`` computes, with the module's weight and eps."""

from __future__ import annotations

import torch

from specforge.api.nn import RMSNorm


class _RMSNorm(torch.autograd.Function):
    """``weight * (x · rsqrt(mean(x²) + eps))`` with the statistics in at least fp32."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        inv = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)  # [..., 1]
        ctx.save_for_backward(x, weight, inv)
        return weight * (xf * inv).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, inv = ctx.saved_tensors
        xf = x.to(inv.dtype)
        normed = xf * inv  # [..., H]
        d_weight = (grad * normed.to(x.dtype)).flatten(0, -2).sum(0)
        d_normed = grad.to(inv.dtype) * weight.to(inv.dtype)
        d_x = inv * (d_normed - normed * (d_normed * normed).mean(-1, keepdim=True))
        return d_x.to(x.dtype), d_weight.to(weight.dtype), None


def rms_norm(norm: RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` through ``_RMSNorm``."""
    return _RMSNorm.apply(x, norm.weight, norm.eps)
