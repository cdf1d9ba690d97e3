"""``specforge export --format sglang`` is judged against the weights SGLang's draft classes load.

Known-good exports come from the strategies themselves and from the kept weight list; known-bad
ones miss, add, reshape or mistype a weight, or carry a config SGLang would misread.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specforge.contracts import DataStats, SpecialTokens, TargetInfo
from specforge.options import build_options
from specforge.registry import get_registry
from specforge_sglang.export_check import check_export_dir
from specforge_sglang.testing import dflash_config, eagle3_config, write_export

# ----------------------------------------------------------------- real exports of the strategies


def tiny_info(vocab: int = 272, hidden: int = 64, layers: int = 8) -> TargetInfo:
    gen = torch.Generator().manual_seed(0)
    config = {"model_type": "qwen3", "hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
              "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 256}
    return TargetInfo(model_path="test:tiny", model_type="qwen3", num_layers=layers, hidden_size=hidden,
                      vocab_size=vocab, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      intermediate_size=128, rms_norm_eps=1e-6, config=config,
                      special_tokens=SpecialTokens(mask=vocab - 1),
                      embed_weight=torch.randn(vocab, hidden, generator=gen),
                      lm_head_weight=torch.randn(vocab, hidden, generator=gen))


def strategy_export(name: str, out: Path, options: dict) -> Path:
    reg = get_registry().get("strategy", name)
    strategy = reg.spec.load()(build_options(reg.spec.options, options, "strategy"))
    info = tiny_info()
    stats = DataStats(num_samples=1, num_tokens=100, num_loss_tokens=100, corpus_hash="c",
                      loss_token_counts={i: 272 - i for i in range(200)})
    strategy.export(strategy.build_draft(info, stats), out, "sglang")
    return out


@pytest.mark.parametrize(("strategy", "options"), [
    ("eagle3", {"draft_vocab_size": 100}),
    ("dflash", {"block_size": 4, "num_draft_layers": 2}),
    ("domino", {"block_size": 4}),
])
def test_exports_of_the_strategies_load_exactly(tmp_path: Path, strategy: str, options: dict) -> None:
    out = strategy_export(strategy, tmp_path / strategy, options)
    assert check_export_dir(out, strategy=strategy) == []


def test_the_hook_judges_sglang_exports_through_the_registry(tmp_path: Path) -> None:
    out = write_export(tmp_path / "e", eagle3_config(), drop=("norm.weight",))
    problems = get_registry().check_export("eagle3", "sglang", out, {})
    assert "[sglang] missing weight norm.weight [64] (SGLang's LlamaForCausalLMEagle3 loads it)" in problems
    assert not [p for p in get_registry().check_export("eagle3", "hf", out, {}) if p.startswith("[sglang]")]


# ----------------------------------------------------------------- the kept list, good and bad


@pytest.mark.parametrize("config", [
    eagle3_config(), eagle3_config(bias=True), eagle3_config(draft_vocab_size=272), dflash_config(),
    dflash_config(domino=True), dflash_config(attention_bias=True),
], ids=["eagle3", "eagle3-bias", "eagle3-full-vocab", "dflash", "domino", "dflash-bias"])
def test_an_export_of_exactly_the_kept_weights_passes(tmp_path: Path, config: dict) -> None:
    assert check_export_dir(write_export(tmp_path, config), strategy="x", probe=False) == []


def bad(tmp_path: Path, config: dict, strategy: str = "eagle3", **kwargs) -> list[str]:
    return check_export_dir(write_export(tmp_path, config, **kwargs), strategy=strategy, probe=False)


def test_a_missing_weight_is_named_with_its_shape(tmp_path: Path) -> None:
    assert bad(tmp_path, eagle3_config(), drop=("fc.weight",)) == [
        "missing weight fc.weight [64, 192] (SGLang's LlamaForCausalLMEagle3 loads it)"]


def test_a_weight_sglang_would_ignore_is_named(tmp_path: Path) -> None:
    problems = bad(tmp_path, eagle3_config(), extra={"layers.0.self_attn.q_proj.weight": (64, 128)})
    assert problems == ["unexpected weight layers.0.self_attn.q_proj.weight: SGLang's LlamaForCausalLMEagle3 "
                        "would ignore it silently"]


def test_a_wrong_shape_is_named(tmp_path: Path) -> None:
    problems = bad(tmp_path, eagle3_config(), reshape={"midlayer.self_attn.q_proj.weight": (64, 64)})
    assert problems == ["weight midlayer.self_attn.q_proj.weight has shape [64, 64], SGLang expects [64, 128]"]


def test_d2t_must_be_int64(tmp_path: Path) -> None:
    out = write_export(tmp_path, eagle3_config())
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(out / "model.safetensors"))
    tensors["d2t"] = tensors["d2t"].int()
    save_file(tensors, str(out / "model.safetensors"))
    assert check_export_dir(out, strategy="eagle3", probe=False) == [
        "weight d2t has dtype int32, SGLang expects int64"]


def test_a_reduced_draft_vocab_needs_d2t(tmp_path: Path) -> None:
    assert "missing weight d2t [100]" in bad(tmp_path, eagle3_config(), drop=("d2t",))[0]


def test_a_missing_draft_vocab_size_is_a_config_problem(tmp_path: Path) -> None:
    config = eagle3_config()
    del config["draft_vocab_size"]
    problems = bad(tmp_path, config)
    assert any("lacks draft_vocab_size" in p for p in problems), problems


def test_domino_needs_a_prefix_length_sglang_serves(tmp_path: Path) -> None:
    config = dflash_config(domino=True)
    config["dflash_config"]["pure_draft_prefix_len"] = 2
    problems = bad(tmp_path, config, strategy="domino")
    assert any("pure_draft_prefix_len is 2" in p for p in problems), problems


def test_dflash_fc_width_follows_the_target_layer_ids(tmp_path: Path) -> None:
    config = dflash_config()
    out = write_export(tmp_path, config)
    config["dflash_config"]["target_layer_ids"] = [0, 1, 2]
    (out / "config.json").write_text(json.dumps(config))
    assert check_export_dir(out, strategy="dflash", probe=False) == [
        "weight fc.weight has shape [64, 128], SGLang expects [64, 192]"]


def test_a_strategy_export_with_the_wrong_architecture_is_refused(tmp_path: Path) -> None:
    problems = bad(tmp_path, dflash_config(), strategy="eagle3")
    assert problems == ["a eagle3 export must target LlamaForCausalLMEagle3, config.json says DFlashDraftModel"]


def test_an_unknown_third_party_architecture_is_not_judged(tmp_path: Path) -> None:
    out = write_export(tmp_path, eagle3_config())
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["MyDraftModel"]
    (out / "config.json").write_text(json.dumps(config))
    assert check_export_dir(out, strategy="my-strategy", probe=False) == []
    assert check_export_dir(out, strategy="eagle3", probe=False) == [
        "config.json architectures ['MyDraftModel'] lack LlamaForCausalLMEagle3, the SGLang draft class for eagle3"]


def test_without_sglang_the_probe_is_skipped_automatically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import specforge_sglang.export_check as ec

    def fail(*_a, **_k):
        raise AssertionError("the SGLang probe must not run where SGLang is not installed")

    monkeypatch.setattr(ec, "probe_problems", fail)
    assert check_export_dir(write_export(tmp_path, eagle3_config()), strategy="eagle3") == []


def test_dflash_layer_ids_must_lie_inside_the_target(tmp_path: Path) -> None:
    config = dflash_config()
    config["dflash_config"]["num_target_layers"] = 2  # ids [0, 2]: layer 2 does not exist
    problems = bad(tmp_path, config, strategy="dflash")
    assert problems == ["dflash_config.target_layer_ids [0, 2] reach beyond num_target_layers 2"]
