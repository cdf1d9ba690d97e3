"""The fused training step computes what the previous, dense implementation computed: the same
per-step losses and accuracies (fp32, to 1e-5 relative) over several AdamW steps from fixed seeds.

``previous_forward`` is that implementation, kept here as the slow reference: the full [B, h, S, S]
masked scores with one softmax over [step-0 keys ; diagonal keys], the full-vocabulary teacher
logits, and the [B, S, Vd] draft logits of every step."""

from __future__ import annotations

import copy
import math

import torch

from specforge.contracts import StepContext
from specforge.nn.rope import apply_rotary
from specforge.testing import synthetic
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy

TTT = 7


def dense_attention(attn, x, cos, sin, keys, values, mask0):
    """The midlayer's attention with explicit scores; ``keys``/``values`` collect each step's."""
    b, s, _ = x.shape
    h, hkv, d = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = apply_rotary(attn.q_proj(x).view(b, s, h, d).transpose(1, 2), cos, sin)  # [B, h, S, D]
    k = apply_rotary(attn.k_proj(x).view(b, s, hkv, d).transpose(1, 2), cos, sin)
    v = attn.v_proj(x).view(b, s, hkv, d).transpose(1, 2)
    keys.append(k.repeat_interleave(h // hkv, dim=1))
    values.append(v.repeat_interleave(h // hkv, dim=1))
    scores0 = (q @ keys[0].transpose(-1, -2)) / math.sqrt(d)  # [B, h, S, S]
    scores0 = scores0.masked_fill(~mask0, float("-inf"))
    diag = [(q * kk).sum(-1, keepdim=True) / math.sqrt(d) for kk in keys[1:]]  # each [B, h, S, 1]
    probs = torch.softmax(torch.cat([scores0, *diag], dim=-1), dim=-1)
    out = probs[..., :s] @ values[0]
    for i, vv in enumerate(values[1:]):
        out = out + probs[..., s + i, None] * vv
    return attn.o_proj(out.transpose(1, 2).reshape(b, s, h * d))


def previous_forward(draft, batch):
    """(ploss [T], correct [T], counted [T]) as the dense implementation computed them."""
    ids, am, lmask = batch["input_ids"], batch["attention_mask"], batch["loss_mask"]
    b, s = ids.shape
    layer = draft.midlayer
    # teacher: full-vocabulary logits of h_{t+1}, argmax, softmax over the draft vocabulary
    nxt = torch.cat([batch["last_hidden"][:, 1:], torch.zeros_like(batch["last_hidden"][:, :1])], dim=1)
    with torch.no_grad():
        logits_t = nxt @ draft.target_head.weight.T  # [B, S, V]
    target = logits_t.argmax(-1)
    probs_t = torch.softmax(logits_t[..., draft.t2d], dim=-1)  # [B, S, Vd]
    has_next = torch.cat([am[:, 1:], torch.zeros_like(am[:, :1])], dim=1)
    mask = lmask.float() * has_next.float()
    pmask = mask * draft.t2d[target].float()

    def at(x, k, fill):  # the teacher tensor read at t+k, padded past the end
        pad = torch.full_like(x[:, :k], fill)
        return torch.cat([x[:, k:], pad], dim=1)

    mask0 = torch.ones(s, s, dtype=torch.bool).tril()[None, None] & am.bool()[:, None, None, :]
    tokens = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], dim=1)
    hidden = draft.fc(batch["hidden_states"])
    positions = torch.arange(s).expand(b, s)
    keys, values, plosses, correct, counted = [], [], [], [], []
    vd = probs_t.shape[-1]
    for k in range(TTT):
        step_ids = torch.cat([tokens[:, k:], torch.zeros_like(tokens[:, :k])], dim=1)
        cos, sin = draft.rotary(positions + k, hidden.dtype)
        x = torch.cat([layer.input_layernorm(draft.embed_tokens(step_ids)), layer.hidden_norm(hidden)], dim=-1)
        hidden = hidden + dense_attention(layer.self_attn, x, cos, sin, keys, values, mask0)
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        logits = draft.lm_head(draft.norm(hidden))  # [B, S, Vd]
        p, pm, lm, tgt = at(probs_t, k, 1.0 / vd), at(pmask, k, 0.0), at(mask, k, 0.0), at(target, k, 0)
        plosses.append((-(p * torch.log_softmax(logits, -1)).sum(-1) * pm).sum() / pm.numel())
        pred = logits.argmax(-1)
        correct.append((((pred + draft.d2t[pred]) == tgt).float() * lm).sum())
        counted.append(lm.sum())
    return torch.stack(plosses), torch.stack(correct), torch.stack(counted)


def setup():
    info = synthetic.tiny_target_info(hidden_size=64, num_layers=8, vocab_size=256, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128)
    strategy = Eagle3Strategy(Eagle3Options(ttt_length=TTT, draft_vocab_size=96))
    request = strategy.feature_request(info)

    def batch(seed):
        samples = []
        for i, length in enumerate((48, 37)):
            ids = synthetic.synthetic_ids(length, info, seed=100 * seed + i)
            samples.append(synthetic.synthetic_features(info, request, ids, synthetic.synthetic_loss_mask(length)))
        return strategy.collate(samples)

    torch.manual_seed(0)
    corpus = [synthetic.synthetic_features(info, request, synthetic.synthetic_ids(64, info, seed=s),
                                           synthetic.synthetic_loss_mask(64)) for s in range(3)]
    draft = strategy.build_draft(info, synthetic.synthetic_stats(corpus))
    return strategy, draft, batch


def test_losses_and_accuracies_equal_the_dense_implementation_over_adamw_steps() -> None:
    """Both implementations are compared at the same weights every step: AdamW follows the fused
    one, and the dense copy gets its weights before each step. (Two AdamW runs from fp32 gradients
    that differ in their last bits drift apart: a first Adam step moves a weight by ~lr·sign(grad),
    so a near-zero gradient whose sign differs moves it by 2·lr, which no tolerance on the next
    step's gradient can tell from a real difference.)"""
    strategy, fused, batch = setup()
    dense = copy.deepcopy(fused)
    opt = torch.optim.AdamW([p for p in fused.parameters() if p.requires_grad], lr=3e-3)
    for step in range(4):
        dense.load_state_dict(fused.state_dict())
        data = batch(step)
        out = strategy.loss(fused, data, StepContext(step=step, total_steps=4))
        plosses, correct, counted = previous_forward(dense, data)
        for k in range(TTT):
            got = float(out.metrics[f"ploss_{k}"])  # a detached copy
            want = float(plosses[k].detach())
            assert math.isclose(got, want, rel_tol=1e-5), (step, k, got, want)
            hits, total = out.ratio_metrics[f"acc_{k}"]
            assert (float(hits), float(total)) == (float(correct[k]), float(counted[k])), (step, k)
        total_dense = sum(0.8**k * plosses[k] for k in range(TTT))
        assert math.isclose(float(out.loss.detach()), float(total_dense.detach()), rel_tol=1e-5)
        for model, loss in ((fused, out.loss), (dense, total_dense)):
            model.zero_grad()
            loss.backward()
        for (name, a), b in zip(fused.named_parameters(), dense.parameters()):
            if a.requires_grad:
                err = float((a.grad - b.grad).norm() / b.grad.norm().clamp_min(1e-12))
                assert err < 1e-5, f"step {step}: gradient of {name} differs by {err:.1e} (relative)"
        opt.step()
