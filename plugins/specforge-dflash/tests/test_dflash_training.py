"""DFlash's loss: the global token mean of weighted slot CE, memory-bounded and reproducible."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from specforge.contracts import StepContext
from specforge.testing.synthetic import synthetic_features, synthetic_samples, tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.labels import block_targets
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy

CTX = StepContext(step=0, total_steps=30)


def _setup(lengths=(18, 11), dtype="float64", **options):
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype=dtype)
    strategy = DFlashStrategy(DFlashOptions(**{"block_size": 4, "num_anchors": 32, **options}))
    batch = strategy.collate(synthetic_samples(info, strategy.feature_request(info), lengths=lengths))
    torch.manual_seed(0)
    return info, strategy, strategy.build_draft(info, None), batch


def _mean(out):
    return out.terms[0] / out.terms[1]


def test_loss_falls_on_a_fixed_batch():
    _, strategy, draft, batch = _setup()
    opt = torch.optim.AdamW([p for p in draft.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(30):
        loss = _mean(strategy.loss(draft, batch, CTX))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_terms_are_the_weighted_cross_entropy_sum_and_the_weight_sum():
    _, strategy, draft, batch = _setup()
    anchors = torch.tensor([[3, 6, 9], [4, 0, 0]])
    keep = torch.tensor([[True, True, True], [True, False, False]])
    blocks = noise_blocks(batch["input_ids"], anchors, keep, 4, draft.config.mask_token_id)
    targets = block_targets(batch["input_ids"], batch["loss_mask"], anchors, keep, 4, gamma=7.0)
    out = draft(batch["hidden_states"], blocks, anchors, keep, labels=targets.labels)
    logits = draft(batch["hidden_states"], blocks, anchors, keep)["logits"]  # [B, N, bs, V]
    naive = F.cross_entropy(logits.flatten(0, 2), targets.labels.flatten(), reduction="none").view(2, 3, 4)
    # weights by hand: slot k>0 of kept blocks inside supervised text, exp(-(k-1)/7)
    expected_weights = torch.zeros(2, 3, 4)
    for b, n in [(0, 0), (0, 1), (0, 2), (1, 0)]:
        for k in range(1, 4):
            pos = int(anchors[b, n]) + k
            if pos < batch["loss_mask"].shape[1] and batch["loss_mask"][b, pos]:
                expected_weights[b, n, k] = torch.exp(torch.tensor(-(k - 1) / 7.0))
    assert torch.allclose(targets.weights, expected_weights)
    reduced = strategy.reduce(out, targets, keep, CTX)
    num, den = reduced.terms
    torch.testing.assert_close(num, (naive * expected_weights.double()).sum())
    torch.testing.assert_close(den, expected_weights.sum())


def test_chunked_vocab_projection_equals_one_pass_in_loss_and_gradients():
    _, strategy, draft, batch = _setup()
    results = []
    for chunk in (1, 1000):
        draft.loss_chunk_blocks = chunk
        draft.zero_grad()
        loss = _mean(strategy.loss(draft, batch, CTX))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in draft.parameters() if p.requires_grad]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_same_step_redraws_the_same_anchors_and_another_step_does_not():
    _, strategy, draft, batch = _setup(lengths=(40,), num_anchors=4)
    ctx = StepContext(step=5, total_steps=30, micro_step=1)
    first = _mean(strategy.loss(draft, batch, ctx))
    assert torch.equal(first, _mean(strategy.loss(draft, batch, ctx)))
    assert not torch.equal(first, _mean(strategy.loss(draft, batch, StepContext(step=6, total_steps=30))))


def test_padding_and_unkept_blocks_leave_each_sample_loss_unchanged():
    _, strategy, draft, batch = _setup(lengths=(18, 9))
    info = tiny_target_info(hidden_size=32, vocab_size=48, dtype="float64")
    samples = synthetic_samples(info, strategy.feature_request(info), lengths=(18, 9))
    together = strategy.loss(draft, batch, CTX).terms
    alone = [strategy.loss(draft, strategy.collate([s]), CTX).terms for s in samples]
    torch.testing.assert_close(together[0], alone[0][0] + alone[1][0])
    torch.testing.assert_close(together[1], alone[0][1] + alone[1][1])


def test_frozen_target_weights_are_shared_and_get_no_gradient():
    info, strategy, draft, batch = _setup()
    _mean(strategy.loss(draft, batch, CTX)).backward()
    for name, source in (("embed_tokens", info.embed_weight), ("lm_head", info.lm_head_weight)):
        weight = getattr(draft, name).weight
        assert not weight.requires_grad and weight.grad is None
        assert weight.data_ptr() == source.data_ptr()  # no copy of the target's vocabulary matrices
    assert draft.fc.weight.grad is not None and draft.fc.weight.grad.abs().sum() > 0


class LargestFloatTensor(TorchDispatchMode):
    """Records the element count of the largest floating-point tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest, self.ops = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel())
        self.ops += 1
        return out


def test_no_tensor_grows_with_anchors_times_sequence_squared():
    S, N, bs, heads = 48, 40, 4, 4
    info = tiny_target_info(hidden_size=32, vocab_size=48, num_attention_heads=heads)
    strategy = DFlashStrategy(DFlashOptions(block_size=bs, num_anchors=N, attention="blockwise"))
    ids = list(range(S))
    feats = strategy.feature_request(info)
    sample = synthetic_features(info, feats, ids, [1] * S)
    batch = strategy.collate([sample])
    torch.manual_seed(0)
    draft = strategy.build_draft(info, None)
    forward, backward = LargestFloatTensor(), LargestFloatTensor()
    with forward:
        loss = _mean(strategy.loss(draft, batch, CTX))
    with backward:
        loss.backward()
    assert backward.ops > 0  # the mode saw the backward pass too
    bound = heads * N * bs * (S + bs)  # the blockwise attention scores
    dense = heads * N * bs * (S + N * bs)  # scores against one concatenated key sequence
    assert max(forward.largest, backward.largest) <= bound
    assert bound < N * S * S and bound < dense  # so the assertion above rules both out
