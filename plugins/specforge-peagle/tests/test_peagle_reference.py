"""The draft forward, the loss and its gradients equal the slow, explicit float64 reference
(``peagle_reference``), on COD-sampled elements of a padded batch."""

from __future__ import annotations

import math

import pytest
import torch
from peagle_reference import reference_logits, reference_loss
from peagle_tiny import build
from specforge_peagle.cod import CodSample
from specforge_peagle.elements import stack_elements, training_elements

from specforge.api import StepContext
from specforge_eagle3.teacher import shift_left


def sampled(strategy, batch, step=3):
    o = strategy.options
    anchors, depths, documents = training_elements(batch, o.num_depths, o.down_sample_ratio,
                                                   o.down_sample_ratio_min, step, 0)
    per_sample = []
    for b in range(anchors.shape[0]):
        keep = documents[b] >= 0
        per_sample.append(list(zip(anchors[b][keep].tolist(), depths[b][keep].tolist(), [0] * int(keep.sum()))))
    return per_sample


@pytest.mark.parametrize("options", [{"num_draft_layers": 2, "num_depths": 4, "down_sample_ratio": 0.7},
                                     {"num_draft_layers": 3, "num_depths": 3, "norm_before_residual": True}])
def test_element_logits_equal_the_explicit_reference_on_a_padded_batch(options) -> None:
    strategy, draft, _, samples = build({**options, "draft_vocab_size": 24})
    batch = strategy.collate(samples)
    per_sample = sampled(strategy, batch)
    anchors, depths, documents = stack_elements(
        [CodSample(torch.tensor([a for a, _, _ in e]), torch.tensor([d for _, d, _ in e])) for e in per_sample])
    with torch.no_grad():
        got = draft.element_logits(shift_left(batch["input_ids"]), batch["hidden_states"], anchors, depths, documents)
        for b, (s, elements) in enumerate(zip(samples, per_sample)):
            expected = torch.stack(reference_logits(draft, s["input_ids"], s["hidden_states"], elements))
            torch.testing.assert_close(got[b, :len(elements)], expected, rtol=1e-10, atol=1e-10)
    assert torch.isfinite(got).all()  # padding elements too


def test_strategy_loss_and_per_depth_accuracy_equal_the_reference() -> None:
    strategy, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 4, "draft_vocab_size": 32,
                                         "down_sample_ratio": 0.8}, lengths=(12, 9))
    batch = strategy.collate(samples)
    draft_ids = draft.t2d.nonzero().flatten().tolist()
    expected, hits, counts = reference_loss(draft, samples, sampled(strategy, batch))
    out = strategy.loss(draft, batch, StepContext(step=3, total_steps=10))
    assert math.isclose(float(out.loss.detach()), float(expected.detach()), rel_tol=1e-10)
    for d in range(4):
        num, den = out.ratio_metrics[f"acc_{d}"]
        assert (float(num), float(den)) == (hits.get(d, 0), counts.get(d, 0)), f"depth {d}"
    assert sum(counts.values()) > 0 and len(counts) >= 3  # the case exercises several depths
    outside = [int((draft.target_head.weight @ s["last_hidden"][t + 1]).argmax()) not in draft_ids
               for s in samples for t in range(len(s["input_ids"]) - 1) if s["loss_mask"][t]]
    assert any(outside)  # ... and targets outside the draft vocabulary, which are not trained


def test_gradients_equal_the_reference_gradients() -> None:
    strategy, draft, _, samples = build({"num_draft_layers": 2, "num_depths": 3, "draft_vocab_size": 24},
                                        lengths=(8, 6))
    batch = strategy.collate(samples)
    params = [p for p in draft.parameters() if p.requires_grad]
    names = [n for n, p in draft.named_parameters() if p.requires_grad]
    got = torch.autograd.grad(strategy.loss(draft, batch, StepContext(step=1, total_steps=5)).loss, params)
    expected = torch.autograd.grad(reference_loss(draft, samples, sampled(strategy, batch, step=1))[0], params,
                                   allow_unused=True)
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, torch.zeros_like(g) if e is None else e, rtol=1e-9, atol=1e-11, msg=name)
    assert float(dict(zip(names, got))["mask_hidden"].abs().sum()) > 0  # drafted depths train mask_hidden
    assert float(dict(zip(names, got))["embed_tokens.weight"].abs().sum()) > 0  # the embedding trains
