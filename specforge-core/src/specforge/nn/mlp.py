"""The gated (SwiGLU) MLP of Llama/Qwen decoder layers, with their parameter names."""

from __future__ import annotations

import torch
from torch import nn


def activation(name: str):
    """The activation a Hugging Face config names (``hidden_act``)."""
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise ValueError(f"unknown hidden_act {name!r}; known: {', '.join(sorted(ACT2FN))}")
    return ACT2FN[name]


class SwiGLUMLP(nn.Module):
    """``down(act(gate(x)) * up(x))``, no biases; names match HF checkpoints (gate_proj/up_proj/down_proj)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "silu") -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.act = activation(hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
