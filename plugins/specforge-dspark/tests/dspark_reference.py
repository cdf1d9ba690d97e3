"""Slow, loop-by-loop references for the DSpark tests, written from the method's formulas alone.

Nothing here calls the plugin's head, label or loss code: weights are read as plain tensors and
every slot is computed on its own, in float64.
"""

from __future__ import annotations

import math

import torch


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def markov_bias(head_type: str, w: dict[str, torch.Tensor], prev_ids: list[int],
                hidden: torch.Tensor) -> torch.Tensor:
    """[bs, V]: the bias each slot adds, from x_prev (and h, and the block's recurrent state)."""
    W1, W2 = w["markov_w1.weight"], w["markov_w2.weight"]  # [V, r], [V, r]
    r = W1.shape[1]
    state = torch.zeros(r, dtype=torch.float64)
    rows = []
    for k, token in enumerate(prev_ids):
        e, h = W1[token], hidden[k]
        if head_type == "vanilla":
            z = e
        elif head_type == "gated":
            gate = sigmoid(w["gate_proj.weight"] @ torch.cat([h, e]) + w["gate_proj.bias"])
            z = gate * e
        elif head_type == "rnn":
            out = w["joint_proj.weight"] @ torch.cat([state, e, h]) + w["joint_proj.bias"]
            g, c, o = out[:r], out[r:2 * r], out[2 * r:]
            keep = sigmoid(g)
            state = keep * state + (1 - keep) * torch.tanh(c)
            z = torch.tanh(o)
        else:
            raise ValueError(head_type)
        rows.append(W2 @ z)
    return torch.stack(rows)


def block_layout(ids: list[int], mask: list[int], anchor: int, bs: int) -> tuple[list[int], list[int], list[float]]:
    """(labels x_{p+k+1}, previous tokens x_{p+k}, 0/1 weights of the contiguous valid prefix)."""
    S = len(ids)
    labels, prev, valid = [], [], []
    still = True
    for k in range(bs):
        idx = anchor + k + 1
        still = still and idx < S and mask[idx] == 1
        labels.append(ids[min(idx, S - 1)])
        prev.append(ids[min(anchor + k, S - 1)])
        valid.append(1.0 if still else 0.0)
    return labels, prev, valid


def softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max())
    return e / e.sum()


def pooled_loss(blocks: list[dict], alpha: tuple[float, float, float], gamma: float | None) -> dict[str, torch.Tensor]:
    """Token-pooled DSpark loss over every slot of every block (each dict: logits [bs, V], teacher
    logits [bs, V], confidence [bs] or None, labels, valid), plus tau_probabilistic."""
    a_ce, a_l1, a_conf = alpha
    num = torch.zeros((), dtype=torch.float64)
    den = torch.zeros((), dtype=torch.float64)
    tau_sum, tau_blocks = 0.0, 0
    for blk in blocks:
        run, prefix = 1.0, 1.0
        for k, v in enumerate(blk["valid"]):
            if not v:
                continue
            w = math.exp(-k / gamma) if gamma else 1.0
            logits = blk["logits"][k]
            p_d, p_t = softmax(logits), softmax(blk["teacher"][k])
            ce = -torch.log(p_d[blk["labels"][k]])
            l1 = (p_d - p_t).abs().sum()
            a = min(max(1.0 - 0.5 * float(l1.detach()), 0.0), 1.0)
            term = a_ce * ce + a_l1 * l1
            if blk["confidence"] is not None:
                c = blk["confidence"][k]
                term = term + a_conf * -(a * torch.log(sigmoid(c)) + (1 - a) * torch.log(1 - sigmoid(c)))
            num = num + w * term
            den = den + w
            prefix *= a
            run += prefix
        if any(blk["valid"]):
            tau_sum += run
            tau_blocks += 1
    return {"loss": num / den, "num": num, "den": den, "tau": tau_sum / tau_blocks}
