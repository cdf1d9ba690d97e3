"""DSpark's options and target checks: what the user must change is said in one line."""

from __future__ import annotations

import pytest

from specforge.api import UserError
from specforge.errors import ConfigError
from specforge.options import build_options
from specforge.registry import load_registry
from specforge.testing.synthetic import tiny_target_info
from specforge_dspark.options import DSparkOptions
from specforge_dspark.strategy import DSparkStrategy


def test_registry_finds_dspark_and_its_options_extend_dflash():
    reg = load_registry().get("strategy", "dspark")
    assert reg.plugin.distribution == "specforge-dspark"
    assert reg.spec.load() is DSparkStrategy and reg.spec.export_formats == ("sglang",)
    names = set(reg.spec.options.__dataclass_fields__)
    assert {"target_layer_ids", "block_size", "num_anchors", "markov_rank", "markov_head_type",
            "enable_confidence_head", "confidence_head_with_markov", "ce_loss_alpha", "l1_loss_alpha",
            "confidence_loss_alpha"} <= names


@pytest.mark.parametrize(("values", "key"), [
    ({"markov_head_type": "lstm"}, "strategy.markov_head_type"),
    ({"markov_rank": 0}, "strategy.confidence_head_with_markov"),
    ({"enable_confidence_head": True, "confidence_loss_alpha": 0.0}, "strategy.enable_confidence_head"),
    ({"ce_loss_alpha": 0.0, "l1_loss_alpha": 0.0}, "strategy.ce_loss_alpha"),
])
def test_inconsistent_options_are_refused_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_options(DSparkOptions, values, "strategy")


def test_gqa_needs_fewer_kv_heads_and_mha_equal_ones():
    equal = tiny_target_info(hidden_size=32, vocab_size=48, num_attention_heads=4, num_key_value_heads=4)
    with pytest.raises(UserError, match=r"strategy\.attention_mode=mha"):
        DSparkStrategy(DSparkOptions()).plan_notes(equal)
    assert DSparkStrategy(DSparkOptions(attention_mode="mha")).draft_config(equal).attention_mode == "mha"
    grouped = tiny_target_info(hidden_size=32, vocab_size=48)
    with pytest.raises(UserError, match=r"strategy\.attention_mode=gqa"):
        DSparkStrategy(DSparkOptions(attention_mode="mha")).build_draft(grouped, None)


def test_the_target_distribution_is_captured_only_when_the_loss_reads_it():
    info = tiny_target_info(hidden_size=32, vocab_size=48, with_weights=False)
    assert DSparkStrategy(DSparkOptions()).feature_request(info).last_hidden
    ce_only = DSparkOptions(l1_loss_alpha=0.0, confidence_loss_alpha=0.0)
    request = DSparkStrategy(ce_only).feature_request(info)
    assert not request.last_hidden and request.layers == (4,)


def test_the_plan_names_the_mask_token_and_the_heads():
    notes = DSparkStrategy(DSparkOptions()).plan_notes(tiny_target_info(hidden_size=32, vocab_size=48))
    assert notes[0].startswith("mask token 47 (")
    assert "markov vanilla rank 256, confidence head with markov input" in notes[1]


def test_dflash_dpace_loss_is_refused_in_one_line_naming_the_key():
    with pytest.raises(UserError, match=r"strategy\.loss=dpace-continuation-value-only .*dspark"):
        DSparkStrategy(DSparkOptions(loss="dpace-continuation-value-only"))
