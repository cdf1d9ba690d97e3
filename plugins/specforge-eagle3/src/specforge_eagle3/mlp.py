"""The midlayer's SwiGLU MLP as one autograd function, for memory: its autograd graph would keep
four [B, S, I] tensors per TTT step (gate, up, silu(gate), their product); this keeps the gate
and up projections only (one [B, S, 2I] tensor from one matmul) and recomputes the rest,
elementwise, in backward, over chunks of positions so that its temporaries stay small at long
sequence lengths. Same parameters (``gate_proj``, ``up_proj``, ``down_proj``), same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from specforge.api.nn import SwiGLUMLP

SILU = ("silu", "swish")  # the hidden_act names transformers maps to SiLU
CHUNK_ELEMENTS = 2**22  # [positions, I] temporaries alive at once (16 MiB in fp32)


class _SiluGatedMLP(torch.autograd.Function):
    """``down(silu(x Wgᵀ) · x Wuᵀ)`` with ``w_gate_up = [Wg ; Wu]`` [2I, H] and ``w_down`` [H, I]."""

    @staticmethod
    def forward(ctx, x, w_gate_up, w_down, mm_dtype, rows):
        shape = x.shape
        xs = x.reshape(-1, shape[-1]).to(mm_dtype)  # [N, H]
        gate_up = xs @ w_gate_up.to(mm_dtype).T  # [N, 2I]
        inter = gate_up.shape[-1] // 2
        wd = w_down.to(mm_dtype)
        out = torch.empty(xs.shape[0], wd.shape[0], dtype=mm_dtype, device=x.device)  # [N, H]
        for start in range(0, xs.shape[0], rows):
            part = gate_up[start:start + rows]
            act = F.silu(part[:, :inter]).mul_(part[:, inter:])  # [n, I]
            torch.matmul(act, wd.T, out=out[start:start + rows])
        ctx.save_for_backward(x, gate_up, w_gate_up, w_down)
        ctx.mm_dtype, ctx.rows = mm_dtype, rows
        return out.view(*shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad):
        x, gate_up, w_gate_up, w_down = ctx.saved_tensors
        mm, rows = ctx.mm_dtype, ctx.rows
        inter = gate_up.shape[-1] // 2
        xs = x.reshape(-1, x.shape[-1]).to(mm)  # [N, H]
        grad = grad.reshape(-1, grad.shape[-1]).to(mm)  # [N, H]
        wgu, wd = w_gate_up.to(mm), w_down.to(mm)
        d_x = torch.empty(xs.shape, dtype=mm, device=x.device)
        d_wgu = torch.zeros(w_gate_up.shape, dtype=torch.promote_types(mm, torch.float32), device=x.device)
        d_wd = torch.zeros(w_down.shape, dtype=d_wgu.dtype, device=x.device)
        for start in range(0, xs.shape[0], rows):
            part = slice(start, start + rows)
            gate, up = gate_up[part, :inter], gate_up[part, inter:]
            g = grad[part]
            d_act = g @ wd  # [n, I]
            d_gate_up = torch.empty(d_act.shape[0], 2 * inter, dtype=mm, device=x.device)  # [n, 2I]
            silu = F.silu(gate)
            torch.mul(d_act, silu, out=d_gate_up[:, inter:])  # d up
            torch.ops.aten.silu_backward.grad_input(d_act.mul_(up), gate, grad_input=d_gate_up[:, :inter])
            d_wd += g.T @ silu.mul_(up)  # silu(gate) · up: the activation down_proj saw
            torch.matmul(d_gate_up, wgu, out=d_x[part])
            d_wgu += d_gate_up.T @ xs[part]
        return d_x.view(x.shape).to(x.dtype), d_wgu.to(w_gate_up.dtype), d_wd.to(w_down.dtype), None, None


def gated_mlp(mlp: SwiGLUMLP, x: torch.Tensor, hidden_act: str,
              w_gate_up: torch.Tensor | None = None) -> torch.Tensor:
    """``mlp(x)`` for x [B, S, H], computed by ``_SiluGatedMLP`` when ``hidden_act`` is SiLU;
    ``w_gate_up`` is ``cat([gate_proj.weight, up_proj.weight])`` when the caller keeps it."""
    if hidden_act not in SILU:
        return mlp(x)
    device = x.device.type
    mm_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    if w_gate_up is None:
        w_gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])  # [2I, H]
    rows = max(1, CHUNK_ELEMENTS // mlp.gate_proj.weight.shape[0])
    with torch.autocast(device, enabled=False):
        return _SiluGatedMLP.apply(x, w_gate_up, mlp.down_proj.weight, mm_dtype, rows)
