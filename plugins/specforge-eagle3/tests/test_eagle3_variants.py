"""EAGLE3.1 (``fc_norm``, ``norm_output``) and the LK losses against a slow float64 reference written
from the definitions: the TTT unroll position by position with differentiable weights, the target's
un-renormalised draft-vocabulary probabilities from its full logits, α = Σ min(p, q), the masked
means and the lk_alpha / lk_lambda formulas; values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from eagle3_tiny import build, counts_of, make_samples, make_stats
from test_eagle3_reference import rms, rope, silu

from specforge.contracts import StepContext
from specforge.errors import ConfigError
from specforge.options import build_options
from specforge_eagle3.loss import fused_soft_cross_entropy_acceptance
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy

TTT = 3
CTX = StepContext(step=0, total_steps=1)


def reference_logits(w, cfg, batch, fc_norm: bool, norm_output: bool):
    """Per-step draft logits [T][b][t] from the weights ``w`` (differentiable), one position at a time."""
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    ids, am, feats = batch["input_ids"], batch["attention_mask"], batch["hidden_states"]
    bsz, seq = ids.shape
    ht = cfg.target_hidden_size

    def fused(f):
        if fc_norm:
            f = torch.cat([rms(f[i * ht:(i + 1) * ht], w[f"fc_norm.{i}.weight"]) for i in range(3)])
        return w["fc.weight"] @ f

    hidden = [[fused(feats[b, t]) for t in range(seq)] for b in range(bsz)]
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
                q_all[b, t] = [rope(q[h], t + k) for h in range(nh)]
                k_step[b, t] = [rope(kk[h], t + k) for h in range(nkv)]
                v_step[b, t] = list((w["midlayer.self_attn.v_proj.weight"] @ x).view(nkv, hd))
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
                    p = torch.softmax(torch.stack([q_all[b, t][h] @ key / math.sqrt(hd) for key, _ in visible]), 0)
                    heads_out.append(sum(pi * v for pi, (_, v) in zip(p, visible)))
                mid = hidden[b][t] + w["midlayer.self_attn.o_proj.weight"] @ torch.cat(heads_out)
                z = rms(mid, w["midlayer.post_attention_layernorm.weight"])
                out = mid + w["midlayer.mlp.down_proj.weight"] @ (silu(w["midlayer.mlp.gate_proj.weight"] @ z)
                                                                  * (w["midlayer.mlp.up_proj.weight"] @ z))
                new_hidden[b][t] = out  # the recurrence is pre-norm with or without norm_output
                step_logits[b][t] = w["lm_head.weight"] @ (rms(out, w["norm.weight"]) if norm_output else out)
        hidden = new_hidden
        logits.append(step_logits)
    return logits


def reference_objective(draft, batch, logits, loss: str, kl_scale: float, kl_decay: float):
    """(total loss, per-step acceptance) by the definitions (algorithms §2.5)."""
    head = draft.target_head.weight.detach()
    draft_ids = draft.t2d.nonzero().flatten().tolist()
    ids, am, lmask, last = batch["input_ids"], batch["attention_mask"], batch["loss_mask"], batch["last_hidden"]
    bsz, seq = ids.shape
    total, accs = 0.0, []
    for k in range(TTT):
        ploss, acc_num, log_num, den = 0.0, 0.0, 0.0, 0.0
        for b in range(bsz):
            for t in range(seq):
                j = t + k
                if not (j + 1 < seq and am[b, j + 1]):
                    continue  # no next hidden: masked (counts in B·S only)
                target_logits = head @ last[b, j + 1]
                pm = float(lmask[b, j]) * (int(target_logits.argmax()) in draft_ids)
                if pm == 0:
                    continue
                on_draft = torch.exp(target_logits[draft_ids] - torch.logsumexp(target_logits, 0))
                renorm = on_draft / on_draft.sum()
                log_q = torch.log_softmax(logits[k][b][t], 0)
                ploss = ploss - (renorm * log_q).sum()
                alpha = torch.minimum(on_draft, log_q.exp()).sum()
                acc_num = acc_num + alpha
                log_num = log_num + torch.log(alpha)
                den += 1.0
        ploss = ploss / (bsz * seq)
        acc, log_acc = acc_num / max(den, 1e-8), log_num / max(den, 1e-8)
        if loss == "kl":
            step = ploss
        elif loss == "lk_alpha":
            step = -log_acc
        else:
            weight = kl_scale * torch.exp(-kl_decay * acc.detach())
            step = weight * ploss + (1 - weight) * (1 - acc)
        total = total + 0.8**k * step
        accs.append(float(acc.detach()) if torch.is_tensor(acc) else acc)
    return total, accs


def randomised(options):
    strategy, draft, info = build({"ttt_length": TTT, "draft_vocab_size": 24, **options}, seed=3,
                                  hidden=32, heads=4, kv_heads=2, vocab=40, head_scale=4.0)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if p.requires_grad:
                base = 1.0 if name.endswith(("norm.weight", "layernorm.weight")) or "fc_norm" in name else 0.0
                p.copy_(base + torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return strategy, draft, strategy.collate(make_samples(info, [7, 5], seed=5))


CASES = [
    {"loss": "lk_alpha", "fc_norm": True},
    {"loss": "lk_lambda", "kl_scale": 0.7, "kl_decay": 2.0, "norm_output": False},
    {"loss": "lk_lambda", "fc_norm": True, "kl_scale": 1.5, "kl_decay": 0.0},
    {"loss": "kl", "fc_norm": True, "norm_output": False},
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_variant_loss_and_gradients_equal_the_float64_reference(options) -> None:
    strategy, draft, batch = randomised(options)
    trainable = {n: p for n, p in draft.named_parameters() if p.requires_grad}
    weights = {n: p.detach().clone().requires_grad_(n in trainable) for n, p in draft.named_parameters()}
    logits = reference_logits(weights, draft.config, batch, draft.config.fc_norm, draft.config.norm_output)
    o = strategy.options
    want, accs = reference_objective(draft, batch, logits, o.loss, o.kl_scale, o.kl_decay)
    out = strategy.loss(draft, batch, CTX)
    assert math.isclose(float(out.loss.detach()), float(want.detach()), rel_tol=1e-10, abs_tol=1e-12)
    if o.loss != "kl":
        for k, acc in enumerate(accs):
            num, den = out.ratio_metrics[f"acceptance_{k}"]
            assert math.isclose(float(num) / float(den), acc, rel_tol=1e-10), f"step {k}"
    else:
        assert not any(name.startswith("acceptance_") for name in out.ratio_metrics)
    got = torch.autograd.grad(out.loss, list(trainable.values()))  # every trainable weight is used
    ref = torch.autograd.grad(want, [weights[n] for n in trainable])
    for name, g, r in zip(trainable, got, ref):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-11, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("chunk_elements", [1, 4 * 11, 10**6])
def test_fused_acceptance_equals_the_dense_definition_in_values_and_gradients(chunk_elements) -> None:
    gen = torch.Generator().manual_seed(0)
    b, s, h, vd = 2, 9, 6, 11
    x = (torch.randn(b, s, h, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    weight = torch.randn(vd, h, generator=gen, dtype=torch.float64).requires_grad_()
    probs = torch.softmax(torch.randn(b, s, vd, generator=gen, dtype=torch.float64) * 3, -1)
    mass = torch.rand(b, s, generator=gen, dtype=torch.float64)
    pm = (torch.rand(b, s, generator=gen) > 0.3).double()
    loss, pred, alpha = fused_soft_cross_entropy_acceptance(x, weight, probs, mass, pm, chunk_elements)
    logits = x @ weight.T
    want_loss = (-(probs * torch.log_softmax(logits, -1)).sum(-1) * pm).sum() / pm.numel()
    want_alpha = torch.minimum(probs * mass[..., None], torch.softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(alpha, want_alpha, rtol=1e-12, atol=1e-14)
    assert torch.equal(pred, logits.argmax(-1))
    upstream = torch.randn(b, s, generator=gen, dtype=torch.float64)  # any weighting of the α's
    got = torch.autograd.grad(0.7 * loss + (alpha * upstream).sum(), (x, weight))
    ref = torch.autograd.grad(0.7 * want_loss + (want_alpha * upstream).sum(), (x, weight))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_fc_norm_normalises_each_target_layer_chunk_before_fc() -> None:
    _, draft, batch = randomised({"fc_norm": True})
    feats = batch["hidden_states"]
    ht = draft.config.target_hidden_size
    assert [tuple(n.weight.shape) for n in draft.fc_norm] == [(ht,)] * 3
    got = draft.fuse(feats)
    chunks = [feats[..., i * ht:(i + 1) * ht] for i in range(3)]
    normed = [c / torch.sqrt(c.pow(2).mean(-1, keepdim=True) + 1e-6) * draft.fc_norm[i].weight
              for i, c in enumerate(chunks)]
    torch.testing.assert_close(got, torch.cat(normed, -1) @ draft.fc.weight.T, rtol=1e-12, atol=1e-12)
    # the per-layer scale of the features no longer matters (up to eps)
    scaled = torch.cat([chunks[0] * 50, chunks[1], chunks[2] * 4], -1)
    torch.testing.assert_close(draft.fuse(scaled), got, rtol=1e-4, atol=1e-5)


def test_plain_eagle3_has_no_fc_norm_and_normalises_before_the_head() -> None:
    _, draft, _ = randomised({})
    assert draft.fc_norm is None and not any("fc_norm" in n for n in draft.state_dict())
    hidden = torch.randn(1, 3, draft.config.hidden_size, dtype=torch.float64)
    torch.testing.assert_close(draft.head_input(hidden), draft.norm(hidden))
    _, raw, _ = randomised({"norm_output": False})
    assert torch.equal(raw.head_input(hidden), hidden)
    assert not raw.norm.weight.requires_grad  # unused: frozen (DDP refuses idle trainable parameters)
    assert torch.equal(raw.norm.weight, torch.ones_like(raw.norm.weight))  # exported as the identity norm


@pytest.mark.parametrize(("values", "key"), [
    ({"loss": "lk"}, "strategy.loss"),
    ({"kl_scale": -0.5}, "strategy.kl_scale"),
    ({"kl_decay": -1.0}, "strategy.kl_decay"),
    ({"fc_norm": "sometimes"}, "strategy.fc_norm"),
])
def test_bad_variant_options_are_refused_in_one_line_naming_the_key(values, key) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        build_options(Eagle3Options, values, "strategy")
    assert "\n" not in str(err.value).strip()


@pytest.mark.parametrize("options", [{"fc_norm": True, "norm_output": False}, {}])
def test_export_carries_both_flags_and_loads_back_identically(tmp_path, options) -> None:
    strategy, draft, batch = randomised(options)
    report = strategy.export(draft, tmp_path, "sglang")
    config = report["config"]
    assert config["fc_norm"] is draft.config.fc_norm and config["norm_output"] is draft.config.norm_output
    fc_norm_keys = sorted(k for k in report["weights"] if k.startswith("fc_norm."))
    assert fc_norm_keys == (["fc_norm.0.weight", "fc_norm.1.weight", "fc_norm.2.weight"] if draft.config.fc_norm
                            else [])
    info = build({"draft_vocab_size": 24}, seed=3, hidden=32, heads=4, kv_heads=2, vocab=40, head_scale=4.0)[2]
    loaded = strategy.load_export(tmp_path, info).double()
    assert (loaded.config.fc_norm, loaded.config.norm_output) == (draft.config.fc_norm, draft.config.norm_output)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)["ploss"], draft(batch)["ploss"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [{"fc_norm": True}, {"norm_output": False}, {"loss": "lk_lambda"},
                                     {"loss": "lk_alpha"}], ids=str)
def test_each_variant_trains_on_a_tiny_target(options) -> None:
    from eagle3_tiny import make_info

    info = make_info(head_scale=6.0)
    samples = make_samples(info, [12, 9, 10], seed=1)
    strategy = Eagle3Strategy(Eagle3Options(ttt_length=3, draft_vocab_size=32, **options))
    torch.manual_seed(0)
    draft = strategy.build_draft(info, make_stats(counts_of(samples)))
    batch = strategy.collate(samples)
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    first = last = None
    for step in range(20):
        opt.zero_grad()
        out = strategy.loss(draft, batch, StepContext(step=step, total_steps=20))
        out.loss.backward()
        opt.step()
        value = float(out.loss.detach())
        assert math.isfinite(value)
        first = value if first is None else first
        last = value
    assert last < 0.8 * first, (first, last)
