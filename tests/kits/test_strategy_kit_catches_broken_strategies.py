"""The strategy kit fails strategies that break the contract, each with a message naming the break.

Each case takes the example strategy and breaks one thing, so a passing kit means something.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from specforge.contracts import FeatureRequest, LossOutput
from specforge.testing import strategy_kit as kit
from specforge_example.loss import medusa_loss
from specforge_example.strategy import ExampleMedusa

STEPS, LR = kit.StrategyKit.train_steps, kit.StrategyKit.learning_rate


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _case_with(strategy_class: type, **options: int) -> kit.KitCase:
    case = kit.make_case("example-medusa", options or {"num_heads": 2})
    return dataclasses.replace(case, strategy=strategy_class(case.options))


@pytest.fixture(scope="module")
def trained_heads() -> tuple[kit.KitCase, torch.nn.Module]:
    """The example strategy with 3 heads, trained as the kit trains it: drafts for the broken propose()s."""
    with torch.random.fork_rng():
        case = kit.make_case("example-medusa", {"num_heads": 3})
        draft, _ = kit.fit(case, STEPS, LR)
    return case, draft


def _with_propose_of(strategy_class: type, trained: tuple[kit.KitCase, torch.nn.Module]) -> tuple:
    case, draft = trained
    return dataclasses.replace(case, strategy=strategy_class(case.options)), draft


class CallsSubmodules(ExampleMedusa):
    def loss(self, draft, batch, ctx):
        logits = torch.stack([torch.nn.functional.linear(h(batch["last_hidden"]), draft.lm_head_weight)
                              for h in draft.heads])
        return LossOutput(loss=logits.logsumexp(-1).mean())


class TooManyTokens(ExampleMedusa):
    def propose(self, draft, state, accepted_ids, features, k):
        return [*super().propose(draft, state, accepted_ids, features, k), 0, 0]


class TensorTokens(ExampleMedusa):
    def propose(self, draft, state, accepted_ids, features, k):
        return [torch.tensor(t) for t in super().propose(draft, state, accepted_ids, features, k)]


class RandomFrozenHead(ExampleMedusa):
    """Recreates the frozen lm_head from the RNG instead of the target: a checkpoint cannot restore it."""

    def build_draft(self, info, stats):
        draft = super().build_draft(info, stats)
        draft.lm_head_weight.copy_(torch.randn_like(draft.lm_head_weight))
        return draft


class MisreportedExport(ExampleMedusa):
    def export(self, draft, out_dir, fmt):
        info = super().export(draft, out_dir, fmt)
        return {**info, "weights": {k: [1] for k in info["weights"]}}


class PickledExtraState(ExampleMedusa):
    def extra_state(self, draft):
        return {"options": self.options}  # a dataclass: torch.load(weights_only=True) refuses it


class CannotLearn(ExampleMedusa):
    """A zero lm_head: logits are 0 whatever the heads do, so the loss stays at log V."""

    def build_draft(self, info, stats):
        draft = super().build_draft(info, stats)
        draft.lm_head_weight.zero_()
        return draft


class LayerOutOfRange(ExampleMedusa):
    def feature_request(self, info):
        return FeatureRequest(layers=(info.num_layers,), last_hidden=True)


def test_kit_fails_a_loss_that_bypasses_draft_call() -> None:
    with pytest.raises(AssertionError, match=r"draft\(\.\.\.\)"):
        kit.check_collate_and_loss(_case_with(CallsSubmodules))


def test_kit_fails_a_proposal_longer_than_k() -> None:
    with pytest.raises(AssertionError, match=r"expected 1\.\.3"):
        kit.check_propose(_case_with(TooManyTokens), k=3)


def test_kit_fails_proposals_that_are_not_python_ints() -> None:
    with pytest.raises(AssertionError, match="not ints"):
        kit.check_propose(_case_with(TensorTokens), k=2)


def test_kit_fails_a_draft_whose_frozen_part_is_not_rebuilt_from_the_target(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="restored draft gives loss"):
        kit.check_checkpoint_restores(_case_with(RandomFrozenHead), tmp_path)


def test_kit_fails_export_info_that_misreports_the_weights(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="differ from the file's"):
        kit.check_export(_case_with(MisreportedExport), tmp_path)


def test_kit_fails_extra_state_that_needs_pickle(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="only tensors and plain values"):
        kit.check_extra_state_roundtrip(_case_with(PickledExtraState), tmp_path)


def test_kit_fails_a_loss_that_does_not_fall() -> None:
    with pytest.raises(AssertionError, match="loss fell from"):
        kit.check_loss_falls(_case_with(CannotLearn), steps=20, lr=1e-2, ratio=0.8)


def test_kit_fails_a_feature_request_beyond_the_targets_layers() -> None:
    case = kit.make_case("example-medusa")
    broken = dataclasses.replace(case, strategy=LayerOutOfRange(case.options))
    with pytest.raises(ValueError, match="out of range"):
        kit.check_feature_request(broken)


def test_kit_fails_a_plugin_module_that_imports_torch() -> None:
    case = dataclasses.replace(kit.make_case("example-medusa"), plugin_module="specforge_example.model")
    with pytest.raises(AssertionError, match="imports torch"):
        kit.check_plugin_imports_no_torch(case)


# ----------------------------------------------------------------- is the method right?


class CountsMaskedPositions(ExampleMedusa):
    """Trains on every position, padding and prompt included: the loss mask is ignored."""

    def loss(self, draft, batch, ctx):
        return medusa_loss(draft, {**batch, "loss_mask": torch.ones_like(batch["loss_mask"])})


class SeesTheWholeSample(ExampleMedusa):
    """Each position also reads the mean hidden state of its whole row: later positions leak in."""

    def loss(self, draft, batch, ctx):
        hidden = batch["last_hidden"]
        return medusa_loss(draft, {**batch, "last_hidden": hidden + hidden.mean(1, keepdim=True)})


class TrainedOneTokenAhead(ExampleMedusa):
    """Head k at t is trained on x_{t+2+k} while propose drafts heads 1..k as x_{t+1+k}: off by one."""

    def loss(self, draft, batch, ctx):
        def one_later(x):  # [B, S]: position j holds x_{j+1}
            return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)

        return medusa_loss(draft, {**batch, "input_ids": one_later(batch["input_ids"]),
                                   "loss_mask": one_later(batch["loss_mask"])})


class ReadsTheHiddenStateBefore(ExampleMedusa):
    """Drafts from the hidden state one position before the newest one (which produced accepted_ids[-2])."""

    def propose(self, draft, state, accepted_ids, features, k):
        return super().propose(draft, state, accepted_ids[:-1], {"last_hidden": features["last_hidden"][:-1]}, k)


class ProposesZero(ExampleMedusa):
    def propose(self, draft, state, accepted_ids, features, k):
        return [0]


class DraftsOneToken(ExampleMedusa):
    """A multi-token strategy (3 heads) that drafts only its first head's token."""

    def propose(self, draft, state, accepted_ids, features, k):
        return super().propose(draft, state, accepted_ids, features, k)[:1]


def test_the_kit_passes_the_example_strategy_it_breaks_below(trained_heads) -> None:
    case, draft = trained_heads
    kit.check_masked_positions_do_not_count(case)
    first, later = kit.check_decoding_agrees_with_training(case, draft, k=3).values()
    assert first[0] == first[1] and later[0] == later[1]
    tau, constant = kit.check_tau_beats_a_constant_drafter(case, draft, k=3)
    assert tau > 3.0 and constant < 1.1
    kit.check_drafts_k_tokens(case, draft, k=3)


@pytest.mark.parametrize("broken", [CountsMaskedPositions, SeesTheWholeSample])
def test_kit_fails_a_loss_that_masked_positions_reach(broken: type) -> None:
    with pytest.raises(AssertionError, match="loss_mask 0 after each sample's last supervised token"):
        kit.check_masked_positions_do_not_count(_case_with(broken, num_heads=3))


def test_kit_fails_a_strategy_trained_one_token_ahead_of_what_it_drafts() -> None:
    case = _case_with(TrainedOneTokenAhead, num_heads=3)
    draft, losses = kit.fit(case, STEPS, LR)
    assert losses[-1] < 0.2 * losses[0]  # it learnt its (shifted) batch: only decoding gives it away
    with pytest.raises(AssertionError, match=r"the first drafted token is the trained-on token at [0-4] of 40 "):
        kit.check_decoding_agrees_with_training(case, draft, k=3)
    with pytest.raises(AssertionError, match=r"τ 1\.0\d by lossless speculative decoding"):
        kit.check_tau_beats_a_constant_drafter(case, draft, k=3)


def test_kit_fails_a_propose_that_reads_the_wrong_position(trained_heads) -> None:
    case, draft = _with_propose_of(ReadsTheHiddenStateBefore, trained_heads)
    with pytest.raises(AssertionError, match="decoding disagrees with training"):
        kit.check_decoding_agrees_with_training(case, draft, k=3)


def test_a_propose_hard_coded_to_return_0_fails_every_decoding_check(trained_heads) -> None:
    case, draft = _with_propose_of(ProposesZero, trained_heads)
    with pytest.raises(AssertionError, match="decoding disagrees with training"):
        kit.check_decoding_agrees_with_training(case, draft, k=3)
    with pytest.raises(AssertionError, match=r"τ 1\.0\d .*need ≥ 1.5 \(the best constant drafter gets 1\.0"):
        kit.check_tau_beats_a_constant_drafter(case, draft, k=3)
    with pytest.raises(AssertionError, match=r"propose\(k=2\) drafted 1 token"):
        kit.check_drafts_k_tokens(case, draft, k=3)


def test_kit_fails_a_multi_token_strategy_that_drafts_one_token(trained_heads) -> None:
    case, draft = _with_propose_of(DraftsOneToken, trained_heads)
    with pytest.raises(AssertionError, match=r"propose\(k=2\) drafted 1 token.*expected min\(k, 3\) = 2"):
        kit.check_drafts_k_tokens(case, draft, k=3)
    kit.check_drafts_k_tokens(case, draft, k=3, limit=1)  # declared as a one-token drafter, it passes
