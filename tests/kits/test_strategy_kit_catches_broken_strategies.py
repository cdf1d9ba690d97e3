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
from specforge_example.strategy import ExampleMedusa


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _case_with(strategy_class: type) -> kit.KitCase:
    case = kit.make_case("example-medusa", {"num_heads": 2})
    return dataclasses.replace(case, strategy=strategy_class(case.options))


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
