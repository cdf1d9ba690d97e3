"""A slow, explicit float64 P-EAGLE reference written from the facts: element by element, the
visible keys listed one by one from the mask rule, RoPE and RMSNorm written out, the teacher
computed from the target head position by position. Imported by the tests as ``peagle_reference``."""

from __future__ import annotations

import math

import torch
from peagle_tiny import MASK


def rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return w * x / torch.sqrt((x * x).mean() + eps)


def rope(vec: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) by pos * theta^(-2i/D)."""
    half = vec.shape[0] // 2
    parts_a, parts_b = [], []
    for i in range(half):
        angle = pos * theta ** (-2 * i / vec.shape[0])
        x1, x2 = vec[i], vec[i + half]
        parts_a.append(x1 * math.cos(angle) - x2 * math.sin(angle))
        parts_b.append(x2 * math.cos(angle) + x1 * math.sin(angle))
    return torch.stack(parts_a + parts_b)


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def visible(q: tuple[int, int, int], k: tuple[int, int, int]) -> bool:
    """The facts' rule for elements (anchor, depth, document): same document, query not padding,
    and (key at depth 0 with anchor <= the query's) or (same anchor, key depth <= query depth)."""
    (qa, qd, qdoc), (ka, kd, kdoc) = q, k
    return qdoc != -1 and qdoc == kdoc and ((kd == 0 and qa >= ka) or (qa == ka and qd >= kd))


def reference_logits(draft, ids, feats, elements):
    """Logits per element of one sample: ids [S] (unshifted), feats [S, 3H], elements [(a, d, doc)]."""
    w = dict(draft.named_parameters())
    cfg = draft.config
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

    def attention(prefix, xs):
        q = [(w[prefix + "q_proj.weight"] @ x).view(nh, hd) for x in xs]
        k = [(w[prefix + "k_proj.weight"] @ x).view(nkv, hd) for x in xs]
        v = [(w[prefix + "v_proj.weight"] @ x).view(nkv, hd) for x in xs]
        pos = [a + d for a, d, _ in elements]
        q = [[rope(q[e][h], pos[e]) for h in range(nh)] for e in range(len(xs))]
        k = [[rope(k[e][h], pos[e]) for h in range(nkv)] for e in range(len(xs))]
        out = []
        for e in range(len(xs)):
            seen = [j for j in range(len(xs)) if visible(elements[e], elements[j])]
            heads = []
            for h in range(nh):
                g = h // (nh // nkv)
                scores = torch.stack([q[e][h] @ k[j][g] / math.sqrt(hd) for j in seen])
                probs = torch.softmax(scores, 0)
                heads.append(sum(p * v[j][g] for p, j in zip(probs, seen)))
            out.append(w[prefix + "o_proj.weight"] @ torch.cat(heads))
        return out

    def mlp(prefix, x):
        return w[prefix + "down_proj.weight"] @ (silu(w[prefix + "gate_proj.weight"] @ x)
                                                 * (w[prefix + "up_proj.weight"] @ x))

    embeds, hidden = [], []
    for a, d, _ in elements:
        p = a + d
        token = (int(ids[p + 1]) if p + 1 < len(ids) else 0) if d == 0 else MASK
        feature = feats[p] if d == 0 else w["mask_hidden"].flatten()
        embeds.append(w["embed_tokens.weight"][token])
        hidden.append(w["fc.weight"] @ feature)
    p0 = "layers.0."
    normed = [rms(g, w[p0 + "hidden_norm.weight"]) for g in hidden]
    xs = [torch.cat([rms(e, w[p0 + "input_layernorm.weight"]), n]) for e, n in zip(embeds, normed)]
    residual = normed if cfg.norm_before_residual else hidden
    hidden = [r + o for r, o in zip(residual, attention(p0 + "self_attn.", xs))]
    hidden = [h + mlp(p0 + "mlp.", rms(h, w[p0 + "post_attention_layernorm.weight"])) for h in hidden]
    for i in range(1, cfg.num_layers):
        p = f"layers.{i}."
        attn = attention(p + "self_attn.", [rms(h, w[p + "input_layernorm.weight"]) for h in hidden])
        hidden = [h + o for h, o in zip(hidden, attn)]
        hidden = [h + mlp(p + "mlp.", rms(h, w[p + "post_attention_layernorm.weight"])) for h in hidden]
    return [w["lm_head.weight"] @ rms(h, w["norm.weight"]) for h in hidden]


def reference_loss(draft, samples, elements_per_sample):
    """Σ w·CE / Σ w over every element of every sample, plus per-depth (hits, counts)."""
    head = draft.target_head.weight.detach()
    draft_ids = draft.t2d.nonzero().flatten().tolist()
    total, weight = 0.0, 0.0
    hits, counts = {}, {}
    for s, elements in zip(samples, elements_per_sample):
        ids, mask, feats, last = s["input_ids"], s["loss_mask"], s["hidden_states"], s["last_hidden"]
        logits = reference_logits(draft, ids, feats, elements)
        for (a, d, _), lg in zip(elements, logits):
            p = a + d
            if p + 1 >= len(ids):
                continue  # no next hidden state: no teacher
            target_logits = head @ last[p + 1]
            target = int(target_logits.argmax())
            m = float(mask[p]) * (target in draft_ids)
            if not m:
                continue
            probs = torch.softmax(target_logits[draft_ids], 0)
            total = total + m * -(probs * torch.log_softmax(lg, 0)).sum()
            weight += m
            pred = draft_ids[int(lg.argmax())]
            hits[d] = hits.get(d, 0) + (pred == target)
            counts[d] = counts.get(d, 0) + 1
    return total / weight, hits, counts
