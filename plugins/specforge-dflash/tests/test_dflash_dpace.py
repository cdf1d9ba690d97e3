"""D-PACE (arXiv 2605.18810) and its two ablations against a slow float64 reference written from the
definition (algorithms §3.5): dense logits, per-block loops over slots for the survival factors, prefix
products and suffix sums, Σ CE·binary·weight / batch size; values and gradients, through the fused
chunked CE the strategy trains with."""

from __future__ import annotations

import math

import pytest
import torch

from specforge.api import UserError
from specforge.contracts import StepContext
from specforge.errors import ConfigError
from specforge.options import build_options
from specforge.testing.synthetic import synthetic_samples, tiny_target_info
from specforge_dflash.anchors import anchor_seed, noise_blocks, sample_anchors
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy

CTX = StepContext(step=2, total_steps=10, micro_step=0)
KINDS = ("dpace", "dpace-cumulative-confidence-only", "dpace-continuation-value-only")


def _setup(**options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    strategy = DFlashStrategy(DFlashOptions(**{"block_size": 5, "num_anchors": 12, **options}))
    batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=(40, 23, 9)))
    torch.manual_seed(0)
    return strategy, strategy.build_draft(info, None), batch


def reference_dpace(strategy, draft, batch, kind: str, alpha: float) -> torch.Tensor:
    """The objective by the definition, one block and one slot at a time."""
    cfg = draft.config
    seeds = [anchor_seed(int(h), CTX.step, CTX.micro_step) for h in batch["sample_hash"].tolist()]
    anchors, keep = sample_anchors(batch["loss_mask"], strategy.options.num_anchors, seeds)
    blocks = noise_blocks(batch["input_ids"], anchors, keep, cfg.block_size, cfg.mask_token_id)
    logits = draft(batch["hidden_states"], blocks, anchors, keep)["logits"]  # [B, N, bs, V]
    ids, lmask = batch["input_ids"], batch["loss_mask"]
    B, S = ids.shape
    total = logits.new_zeros(())
    for b in range(B):
        for n in range(anchors.shape[1]):
            if not keep[b, n]:
                continue
            p0 = int(anchors[b, n])
            ce, binary = [], []
            for k in range(cfg.block_size):
                pos = p0 + k
                label = int(ids[b, min(pos, S - 1)])
                ce.append(-torch.log_softmax(logits[b, n, k], 0)[label])
                binary.append(1.0 if (k > 0 and pos < S and lmask[b, pos] > 0.5) else 0.0)
            survive = [((1 - alpha) * math.exp(-float(c.detach())) + alpha) if m else 1.0 for c, m in zip(ce, binary)]
            prefix = [math.prod(survive[:k + 1]) for k in range(len(ce))]
            suffix = [sum(prefix[j] * binary[j] for j in range(k, len(ce))) for k in range(len(ce))]
            weight = {"dpace": suffix, "dpace-cumulative-confidence-only": prefix,
                      "dpace-continuation-value-only": [s / p for s, p in zip(suffix, prefix)]}[kind]
            total = total + sum(c * m * w for c, m, w in zip(ce, binary, weight))
    return total / B


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_dpace_loss_and_gradients_equal_the_float64_reference(kind, alpha):
    strategy, draft, batch = _setup(loss=kind, dpace_alpha=alpha, loss_chunk_blocks=3)
    num, den = strategy.loss(draft, batch, CTX).terms
    assert float(den) == batch["input_ids"].shape[0]  # the per-sample mean divides by the batch size
    loss = num / den
    params = [p for p in draft.parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, params)
    _, ref_draft, _ = _setup(loss=kind, dpace_alpha=alpha, attention="blockwise")  # same weights, dense masks
    ref = reference_dpace(strategy, ref_draft, batch, kind, alpha)
    want = torch.autograd.grad(ref, [p for p in ref_draft.parameters() if p.requires_grad])
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-11, atol=0)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_the_variants_and_alpha_change_the_loss_and_dflash_stays_the_token_mean():
    values = {}
    for kind in ("dflash", *KINDS):
        strategy, draft, batch = _setup(loss=kind)
        num, den = strategy.loss(draft, batch, CTX).terms
        values[kind] = float((num / den).detach())
    assert len({round(v, 9) for v in values.values()}) == 4, values
    strategy, draft, batch = _setup(loss="dpace", dpace_alpha=0.9)
    num, den = strategy.loss(draft, batch, CTX).terms
    assert not math.isclose(float((num / den).detach()), values["dpace"], rel_tol=1e-6)
    strategy, draft, batch = _setup()
    num, den = strategy.loss(draft, batch, CTX).terms
    assert float(den) != batch["input_ids"].shape[0] and float(den) > 3  # Σ w, not the batch size


@pytest.mark.parametrize(("values", "key"), [
    ({"loss": "pace"}, "strategy.loss"),
    ({"dpace_alpha": 1.5}, "strategy.dpace_alpha"),
    ({"dpace_alpha": -0.1}, "strategy.dpace_alpha"),
])
def test_bad_dpace_options_are_refused_in_one_line_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        build_options(DFlashOptions, values, "strategy")
    assert "\n" not in str(err.value).strip()


def test_a_subclass_with_its_own_reduce_refuses_dpace():
    class OwnLoss(DFlashStrategy):
        name = "own-loss"

        def reduce(self, out, targets, keep, ctx):  # a method with its own objective
            raise NotImplementedError

    with pytest.raises(UserError, match=r"strategy\.loss=dpace .*own-loss"):
        OwnLoss(DFlashOptions(loss="dpace"))
    OwnLoss(DFlashOptions())  # the default is accepted


@pytest.mark.parametrize("kind", KINDS)
def test_each_dpace_variant_trains_on_a_tiny_target(kind):
    strategy, draft, batch = _setup(loss=kind, block_size=4, num_anchors=32)
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(25):
        num, den = strategy.loss(draft, batch, StepContext(step=0, total_steps=25)).terms
        loss = num / den
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0], losses
