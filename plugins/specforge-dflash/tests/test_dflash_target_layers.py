"""Which target layers DFlash reads, its options, mask token and registration."""

from __future__ import annotations

import subprocess
import sys

import pytest

from specforge.contracts import FeatureRequest
from specforge.errors import ConfigError
from specforge.options import build_options
from specforge.registry import load_registry
from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.layer_ids import default_target_layer_ids
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy


def test_default_rule_spreads_draft_layers_from_layer_1_to_L_minus_3():
    assert default_target_layer_ids(36, 5) == (1, 9, 17, 25, 33)  # Qwen3-8B
    assert default_target_layer_ids(24, 5) == (1, 6, 11, 16, 21)  # Qwen2.5-0.5B


def test_one_draft_layer_reads_the_middle_target_layer():
    assert default_target_layer_ids(36, 1) == (18,)
    assert default_target_layer_ids(9, 1) == (4,)


def test_feature_request_asks_for_the_rule_layers_as_hidden_states():
    info = tiny_target_info(num_layers=36, with_weights=False)
    request = DFlashStrategy(DFlashOptions(num_draft_layers=5)).feature_request(info)
    assert request == FeatureRequest(layers=(1, 9, 17, 25, 33))
    assert request.feature_names() == ("input_ids", "loss_mask", "hidden_states")


def test_explicit_layer_ids_override_the_rule():
    info = tiny_target_info(num_layers=8, with_weights=False)
    request = DFlashStrategy(DFlashOptions(target_layer_ids=(6, 2), num_draft_layers=3)).feature_request(info)
    assert request.layers == (6, 2)


@pytest.mark.parametrize("options", [DFlashOptions(target_layer_ids=(1, 8)), DFlashOptions(num_draft_layers=9)])
def test_layer_ids_outside_the_target_name_the_option_to_set(options):
    info = tiny_target_info(num_layers=8, with_weights=False)
    with pytest.raises(ValueError, match=r"--set strategy\.target_layer_ids"):
        DFlashStrategy(options).feature_request(info)


@pytest.mark.parametrize(("values", "problem"), [
    ({"block_size": 1}, "block_size"),
    ({"num_draft_layers": 2, "layer_types": ["full_attention"]}, "one type per draft layer"),
    ({"layer_types": ["sliding_attention"]}, "sliding_window"),
    ({"layer_types": ["local"]}, "unknown"),
    ({"target_layer_ids": [3, 3]}, "repeats"),
])
def test_inconsistent_options_fail_when_the_config_is_read(values, problem):
    with pytest.raises(ConfigError, match=problem):
        build_options(DFlashOptions, values, "strategy")


def test_options_read_lists_from_toml_as_tuples():
    opts = build_options(DFlashOptions, {"target_layer_ids": [1, 4], "block_size": 8,
                                         "num_draft_layers": 2, "sliding_window": 4,
                                         "layer_types": ["sliding_attention", "full_attention"]}, "strategy")
    assert opts.target_layer_ids == (1, 4)
    assert opts.layer_types == ("sliding_attention", "full_attention")


def _info_with_tokens(**tokens):
    import dataclasses

    from specforge.api import SpecialTokens

    return dataclasses.replace(tiny_target_info(hidden_size=32, vocab_size=10), special_tokens=SpecialTokens(**tokens))


def test_mask_token_comes_from_the_option_then_the_target():
    assert DFlashStrategy(DFlashOptions(mask_token_id=5)).mask_token_id(_info_with_tokens(mask=9)) == 5
    assert DFlashStrategy(DFlashOptions()).mask_token_id(_info_with_tokens(mask=9)) == 9


def test_a_missing_or_out_of_range_mask_token_names_the_option():
    with pytest.raises(ValueError, match=r"--set strategy\.mask_token_id"):
        DFlashStrategy(DFlashOptions()).mask_token_id(_info_with_tokens())
    with pytest.raises(ValueError, match=r"--set strategy\.mask_token_id"):
        DFlashStrategy(DFlashOptions(mask_token_id=10)).mask_token_id(_info_with_tokens())


def test_build_draft_without_a_target_mask_token_names_the_option():
    with pytest.raises(ValueError, match="mask_token_id"):
        DFlashStrategy(DFlashOptions()).build_draft(_info_with_tokens(), None)


def test_registry_finds_dflash_through_its_entry_point():
    reg = load_registry().get("strategy", "dflash")
    assert reg.plugin.distribution == "specforge-dflash"
    assert reg.spec.options is DFlashOptions
    assert reg.spec.load() is DFlashStrategy


def test_registration_and_feature_request_import_no_torch():
    code = ("import sys\n"
            "import specforge_dflash.plugin, specforge_dflash.strategy as s\n"
            "from specforge.contracts import TargetInfo\n"
            "info = TargetInfo('m', 'qwen3', num_layers=36, hidden_size=8, vocab_size=9)\n"
            "print(s.DFlashStrategy().feature_request(info).layers, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(18,) False"
