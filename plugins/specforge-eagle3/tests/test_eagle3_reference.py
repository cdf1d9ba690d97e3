"""The TTT attention and the loss equal a slow, explicit reference: loops over steps and
positions, the visible keys listed one by one, RoPE and RMSNorm written out."""

from __future__ import annotations

import math

import torch
from eagle3_tiny import build, counts_of, make_samples

from specforge.contracts import StepContext
from specforge_eagle3.attention import diagonal_attention
from specforge_eagle3.loss import step_accuracy

TTT = 3


def rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return w * x / torch.sqrt((x * x).mean() + eps)


def rope(vec: torch.Tensor, pos: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) by pos * theta^(-2i/D)."""
    half = vec.shape[0] // 2
    out = vec.clone()
    for i in range(half):
        angle = pos * theta ** (-2 * i / vec.shape[0])
        x1, x2 = vec[i], vec[i + half]
        out[i] = x1 * math.cos(angle) - x2 * math.sin(angle)
        out[i + half] = x2 * math.cos(angle) + x1 * math.sin(angle)
    return out


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def reference_unroll(draft, batch):
    """Per-step logits [T][b][t] computed position by position."""
    w = {n: p.detach() for n, p in draft.named_parameters()}
    cfg = draft.config
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    ids, am, feats = batch["input_ids"], batch["attention_mask"], batch["hidden_states"]
    bsz, seq = ids.shape
    hidden = [[w["fc.weight"] @ feats[b, t] for t in range(seq)] for b in range(bsz)]
    keys, values, logits = [], [], []
    for k in range(TTT):
        q_all, k_step, v_step = {}, {}, {}
        for b in range(bsz):
            for t in range(seq):
                tok = int(ids[b, t + k + 1]) if t + k + 1 < seq else 0
                x = torch.cat([rms(w["embed_tokens.weight"][tok], w["midlayer.input_layernorm.weight"]),
                               rms(hidden[b][t], w["midlayer.hidden_norm.weight"])])
                q = (w["midlayer.self_attn.q_proj.weight"] @ x).view(nh, hd)
                kk = (w["midlayer.self_attn.k_proj.weight"] @ x).view(nkv, hd)
                vv = (w["midlayer.self_attn.v_proj.weight"] @ x).view(nkv, hd)
                q_all[b, t] = [rope(q[h], t + k) for h in range(nh)]
                k_step[b, t] = [rope(kk[h], t + k) for h in range(nkv)]
                v_step[b, t] = [vv[h] for h in range(nkv)]
        keys.append(k_step)
        values.append(v_step)
        step_logits = [[None] * seq for _ in range(bsz)]
        new_hidden = [[None] * seq for _ in range(bsz)]
        for b in range(bsz):
            for t in range(seq):
                heads_out = []
                for h in range(nh):
                    g = h // (nh // nkv)
                    visible = [(keys[0][b, s][g], values[0][b, s][g]) for s in range(t + 1) if am[b, s]]
                    visible += [(keys[i][b, t][g], values[i][b, t][g]) for i in range(1, k + 1)]
                    scores = torch.stack([q_all[b, t][h] @ key / math.sqrt(hd) for key, _ in visible])
                    probs = torch.softmax(scores, dim=0)
                    heads_out.append(sum(p * v for p, (_, v) in zip(probs, visible)))
                attn = w["midlayer.self_attn.o_proj.weight"] @ torch.cat(heads_out)
                mid = hidden[b][t] + attn
                z = rms(mid, w["midlayer.post_attention_layernorm.weight"])
                mlp = w["midlayer.mlp.down_proj.weight"] @ (silu(w["midlayer.mlp.gate_proj.weight"] @ z)
                                                            * (w["midlayer.mlp.up_proj.weight"] @ z))
                out = mid + mlp
                new_hidden[b][t] = out
                step_logits[b][t] = w["lm_head.weight"] @ rms(out, w["norm.weight"])
        hidden = new_hidden
        logits.append(step_logits)
    return logits


def reference_loss(draft, batch, logits):
    """(ploss, correct, counted) per step from the explicit definition of the EAGLE3 objective."""
    head = draft.target_head.weight.detach()
    draft_ids = draft.t2d.nonzero().flatten().tolist()
    ids, am, lmask, last = batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["last_hidden"]
    bsz, seq = ids.shape
    out = []
    for k in range(TTT):
        ploss, correct, counted = 0.0, 0.0, 0.0
        for b in range(bsz):
            for t in range(seq):
                j = t + k  # the position whose teacher and masks step k uses
                if not (j + 1 < seq and am[b, j + 1]):
                    continue  # no next hidden state: no teacher
                target_logits = head @ last[b, j + 1]
                target = int(target_logits.argmax())
                p = torch.softmax(target_logits[draft_ids], dim=0)
                m = float(lmask[b, j])
                ce = -(p * torch.log_softmax(logits[k][b][t], dim=0)).sum()
                ploss += m * (target in draft_ids) * float(ce)
                pred = draft_ids[int(logits[k][b][t].argmax())]
                correct += m * (pred == target)
                counted += m
        out.append((ploss / (bsz * seq), correct, counted))
    return out


def randomised_case():
    """A float64 draft with weights far from their init, a padded batch of two samples."""
    strategy, draft, info = build({"ttt_length": TTT, "draft_vocab_size": 24}, seed=3,
                                  counts=None, hidden=32, heads=4, kv_heads=2, vocab=40, head_scale=4.0)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if p.requires_grad:
                base = 1.0 if name.endswith(("norm.weight", "layernorm.weight")) else 0.0
                p.copy_(base + torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    samples = make_samples(info, [7, 5], seed=5)
    return strategy, draft, strategy.collate(samples), counts_of(samples)


def test_diagonal_attention_sees_causal_step0_keys_plus_one_key_per_later_step() -> None:
    gen = torch.Generator().manual_seed(0)
    b, h, s, d, k = 2, 3, 5, 4, 2
    q = torch.randn(b, h, s, d, generator=gen, dtype=torch.float64)
    k0, v0 = (torch.randn(b, h, s, d, generator=gen, dtype=torch.float64) for _ in range(2))
    ks = [torch.randn(b, h, s, d, generator=gen, dtype=torch.float64) for _ in range(k)]
    vs = [torch.randn(b, h, s, d, generator=gen, dtype=torch.float64) for _ in range(k)]
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    mask = torch.ones(s, s, dtype=torch.bool).tril()[None, None] & valid.bool()[:, None, None, :]
    got = diagonal_attention(q, k0, v0, ks, vs, mask)
    for bi in range(b):
        for hi in range(h):
            for t in range(s):
                visible = [(k0[bi, hi, j], v0[bi, hi, j]) for j in range(t + 1) if valid[bi, j]]
                visible += [(ks[i][bi, hi, t], vs[i][bi, hi, t]) for i in range(k)]
                p = torch.softmax(torch.stack([q[bi, hi, t] @ kk / math.sqrt(d) for kk, _ in visible]), 0)
                expected = sum(pi * vv for pi, (_, vv) in zip(p, visible))
                torch.testing.assert_close(got[bi, hi, t], expected, rtol=1e-12, atol=1e-12)


def test_ttt_unroll_and_loss_equal_the_explicit_reference() -> None:
    _, draft, batch, _ = randomised_case()
    expected = reference_loss(draft, batch, reference_unroll(draft, batch))
    out = draft(batch)
    for k, (ploss, correct, counted) in enumerate(expected):
        assert math.isclose(float(out["ploss"][k].detach()), ploss, rel_tol=1e-10, abs_tol=1e-12), f"step {k}"
        assert float(out["correct"][k]) == correct, f"step {k}"
        assert float(out["counted"][k]) == counted, f"step {k}"


def test_strategy_loss_sums_steps_with_weights_0_8_pow_k_and_reports_per_step_metrics() -> None:
    strategy, draft, batch, _ = randomised_case()
    expected = reference_loss(draft, batch, reference_unroll(draft, batch))
    out = strategy.loss(draft, batch, StepContext(step=0, total_steps=1))
    total = sum(0.8**k * p for k, (p, _, _) in enumerate(expected))
    assert math.isclose(float(out.loss.detach()), total, rel_tol=1e-10)
    accs = [c / n for _, c, n in expected]
    for k, (ploss, correct, counted) in enumerate(expected):
        assert math.isclose(float(out.metrics[f"ploss_{k}"]), ploss, rel_tol=1e-10, abs_tol=1e-12)
        num, den = out.ratio_metrics[f"acc_{k}"]
        assert (float(num), float(den)) == (correct, counted)
    tau = 1 + accs[0] + accs[0] * accs[1] + accs[0] * accs[1] * accs[2]
    assert math.isclose(out.metrics["tau_estimate"], tau, rel_tol=1e-12)


def test_accuracy_maps_draft_argmax_to_target_ids_and_counts_out_of_vocab_targets_as_misses() -> None:
    d2t = torch.tensor([1, 2, 2])  # draft ids 0, 1, 2 -> target ids 1, 3, 4
    logits = torch.tensor([[[0.0, 9.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 9.0], [0.0, 0.0, 9.0]]])
    targets = torch.tensor([[3, 1, 2, 4]])  # hit, hit, miss (2 is not in the draft vocab), masked
    hits, total = step_accuracy(logits, d2t, targets, torch.tensor([[1, 1, 1, 0]]))
    assert (float(hits), float(total)) == (2.0, 3.0)
