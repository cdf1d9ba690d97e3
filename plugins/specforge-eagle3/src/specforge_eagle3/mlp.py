"""The midlayer's SwiGLU MLP as one autograd function, for memory: its autograd graph would keep
four [B, S, I] tensors per TTT step (gate, up, silu(gate), their product); this keeps the gate
and up projections only (one [B, S, 2I] tensor from one matmul) and recomputes the rest,
elementwise, in backward. Same parameters (``gate_proj``, ``up_proj``, ``down_proj``), same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specforge.nn.mlp import SwiGLUMLP


class _SiluGatedMLP(torch.autograd.Function):
    """``down(silu(x Wgᵀ) · x Wuᵀ)`` with ``w_gate_up = [Wg ; Wu]`` [2I, H] and ``w_down`` [H, I]."""

    @staticmethod
    def forward(ctx, x, w_gate_up, w_down, mm_dtype):
        gate_up = x.to(mm_dtype) @ w_gate_up.to(mm_dtype).T  # [B, S, 2I]
        gate, up = gate_up.chunk(2, dim=-1)
        out = (F.silu(gate) * up) @ w_down.to(mm_dtype).T  # [B, S, H]
        ctx.save_for_backward(x, gate_up, w_gate_up, w_down)
        ctx.mm_dtype = mm_dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x, gate_up, w_gate_up, w_down = ctx.saved_tensors
        mm = ctx.mm_dtype
        gate, up = gate_up.chunk(2, dim=-1)
        sig = torch.sigmoid(gate)
        silu = gate * sig
        grad = grad.to(mm)
        d_act = grad @ w_down.to(mm)  # [B, S, I]
        d_gate_up = torch.cat([d_act * up * (sig * (1 + gate * (1 - sig))), d_act * silu], dim=-1)  # [B, S, 2I]
        d_x = (d_gate_up @ w_gate_up.to(mm)).to(x.dtype)
        d_w_gate_up = d_gate_up.flatten(0, -2).T @ x.to(mm).flatten(0, -2)  # [2I, H]
        d_w_down = grad.flatten(0, -2).T @ (silu * up).flatten(0, -2)  # [H, I]
        return d_x, d_w_gate_up.to(w_gate_up.dtype), d_w_down.to(w_down.dtype), None


SILU = ("silu", "swish")  # the hidden_act names transformers maps to SiLU


def gated_mlp(mlp: SwiGLUMLP, x: torch.Tensor, hidden_act: str) -> torch.Tensor:
    """``mlp(x)`` for x [B, S, H], computed by ``_SiluGatedMLP`` when ``hidden_act`` is SiLU."""
    if hidden_act not in SILU:
        return mlp(x)
    device = x.device.type
    mm_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    w_gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])  # [2I, H]
    with torch.autocast(device, enabled=False):
        return _SiluGatedMLP.apply(x, w_gate_up, mlp.down_proj.weight, mm_dtype)
