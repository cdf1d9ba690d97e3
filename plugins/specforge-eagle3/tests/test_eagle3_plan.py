"""What EAGLE3 asks of the target, and how its options are checked."""

from __future__ import annotations

import pytest
from eagle3_tiny import make_info

from specforge.contracts import FeatureRequest
from specforge.options import build_options
from specforge.registry import get_registry
from specforge_eagle3.options import Eagle3Options
from specforge_eagle3.strategy import Eagle3Strategy


def request_for(layers: int, **options) -> FeatureRequest:
    return Eagle3Strategy(Eagle3Options(**options)).feature_request(make_info(layers=layers, with_weights=False))


def test_default_layers_for_an_8_layer_target_are_1_3_4_with_the_final_hidden() -> None:
    assert request_for(8) == FeatureRequest(layers=(1, 3, 4), last_hidden=True, logits=False)


def test_default_layers_for_qwen3_8b_depth_are_1_17_32() -> None:
    assert request_for(36).layers == (1, 17, 32)


def test_a_target_too_shallow_for_the_rule_gets_in_range_ids_possibly_repeated() -> None:
    assert request_for(2).layers == (1, 0, 0)
    assert request_for(4).layers == (1, 1, 0)


def test_explicit_layer_ids_are_used_in_the_given_order() -> None:
    assert request_for(12, aux_layer_ids=(2, 5, 9)).layers == (2, 5, 9)


def test_out_of_range_layer_ids_name_the_option_to_fix() -> None:
    with pytest.raises(ValueError, match=r"--set strategy\.aux_layer_ids") as err:
        request_for(8, aux_layer_ids=(1, 3, 8))
    assert "[8]" in str(err.value) and "0..7" in str(err.value)


def test_options_reject_anything_but_three_layer_ids() -> None:
    with pytest.raises(ValueError, match="exactly 3"):
        Eagle3Options(aux_layer_ids=(1, 2))


def test_options_from_a_config_table_turn_lists_into_tuples() -> None:
    opts = build_options(Eagle3Options, {"aux_layer_ids": [1, 2, 3], "ttt_length": 5}, "strategy")
    assert opts.aux_layer_ids == (1, 2, 3) and opts.ttt_length == 5


def test_eagle3_is_registered_with_its_options_class_and_lazy_factory() -> None:
    reg = get_registry().get("strategy", "eagle3")
    assert reg.spec.options is Eagle3Options
    assert reg.spec.factory == "specforge_eagle3.strategy:Eagle3Strategy"
    assert reg.spec.summary.startswith("EAGLE3: ")
    assert reg.spec.load() is Eagle3Strategy
