"""DSpark's export: DFlash's layout plus the heads, as SGLang's Qwen3DSparkModel; and block decoding."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from specforge.api import UserError
from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy
from specforge_dspark.labels import dspark_targets
from specforge_dspark.options import DSparkOptions
from specforge_dspark.strategy import DSparkStrategy

INFO = tiny_target_info(hidden_size=32, vocab_size=48, num_layers=8, dtype="float64")


def _draft(head_type="vanilla", **options):
    opts = DSparkOptions(**{"block_size": 5, "markov_rank": 6, "markov_head_type": head_type, **options})
    strategy = DSparkStrategy(opts)
    torch.manual_seed(0)
    draft = strategy.build_draft(INFO, None)
    with torch.no_grad():
        for p in draft.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        draft.markov_head.markov_w2.weight.normal_(0, 2.0)  # a bias that changes argmaxes
    return strategy, draft


def _sequence(seed=1, length=16):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 47, (length,), generator=gen),
            torch.randn(length, 32, generator=gen, dtype=torch.float64))


def _forward(draft, ids, feats, p):
    anchors, keep = torch.tensor([[p]]), torch.tensor([[True]])
    blocks = noise_blocks(ids[None], anchors, keep, 5, draft.config.mask_token_id)
    prev = dspark_targets(ids[None], torch.ones(1, len(ids)), anchors, keep, 5, gamma=None).prev_ids
    with torch.no_grad():
        return draft(feats[None], blocks, anchors, keep, prev_ids=prev)


HEAD_WEIGHTS = {
    "vanilla": {"markov_head.markov_w1.weight": [48, 6], "markov_head.markov_w2.weight": [48, 6]},
    "gated": {"markov_head.markov_w1.weight": [48, 6], "markov_head.markov_w2.weight": [48, 6],
              "markov_head.gate_proj.weight": [6, 38], "markov_head.gate_proj.bias": [6]},
    "rnn": {"markov_head.markov_w1.weight": [48, 6], "markov_head.markov_w2.weight": [48, 6],
            "markov_head.joint_proj.weight": [18, 44], "markov_head.joint_proj.bias": [18]},
}


@pytest.mark.parametrize("head_type", ["vanilla", "gated", "rnn"])
def test_export_adds_exactly_the_head_weights_to_dflashs(head_type, tmp_path):
    strategy, draft = _draft(head_type)
    result = strategy.export(draft, tmp_path, "sglang")
    weights = load_file(str(tmp_path / "model.safetensors"))
    heads = {k: list(v.shape) for k, v in weights.items() if k.startswith(("markov_head.", "confidence_head."))}
    assert heads == {**HEAD_WEIGHTS[head_type], "confidence_head.proj.weight": [1, 32 + 6],
                     "confidence_head.proj.bias": [1]}
    backbone = set(weights) - set(heads)  # DFlash's own: fc, hidden_norm, norm and 11 per layer
    assert {"fc.weight", "hidden_norm.weight", "norm.weight"} <= backbone and len(backbone) == 3 + 11
    assert result["architecture"] == "Qwen3DSparkModel"


def test_export_config_promotes_the_head_fields_to_the_top_level(tmp_path):
    strategy, draft = _draft("gated", confidence_head_with_markov=False)
    strategy.export(draft, tmp_path, "sglang")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3DSparkModel"] and config["model_type"] == "qwen3"
    assert "auto_map" not in config
    promoted = {"markov_rank": 6, "markov_head_type": "gated", "enable_confidence_head": True,
                "confidence_head_with_markov": False}
    assert promoted.items() <= config.items()
    assert {**promoted, "projector_type": "dspark", "attention_mode": "gqa", "block_size": 5, "mask_token_id": 47,
            "target_layer_ids": [4]}.items() <= config["dflash_config"].items()
    assert config["block_size"] == 5  # SGLang's gamma: tokens drafted per round


@pytest.mark.parametrize("head_type", ["vanilla", "rnn"])
def test_a_reloaded_export_gives_identical_logits_and_confidence(head_type, tmp_path):
    strategy, draft = _draft(head_type)
    strategy.export(draft, tmp_path, "sglang")
    loaded = strategy.load_export(tmp_path, INFO)
    ids, feats = _sequence()
    a, b = _forward(draft, ids, feats, 6), _forward(loaded, ids, feats, 6)
    for key in ("logits", "base_logits", "confidence"):
        assert torch.equal(a[key], b[key]), key


def test_dflash_and_dspark_refuse_each_others_exports(tmp_path):
    strategy, draft = _draft()
    strategy.export(draft, tmp_path / "dspark", "sglang")
    with pytest.raises(ValueError, match="Qwen3DSparkModel"):
        DFlashStrategy(DFlashOptions(block_size=5)).load_export(tmp_path / "dspark", INFO)
    dflash = DFlashStrategy(DFlashOptions(block_size=5))
    dflash.export(dflash.build_draft(INFO, None), tmp_path / "dflash", "sglang")
    with pytest.raises(ValueError, match="--strategy dflash"):
        strategy.load_export(tmp_path / "dflash", INFO)


def test_a_config_whose_top_level_contradicts_dflash_config_is_refused(tmp_path):
    strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    config = json.loads((tmp_path / "config.json").read_text())
    config["markov_rank"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="markov_rank is 7 at the top level but 6 in dflash_config"):
        strategy.load_export(tmp_path, INFO)


def test_a_draft_without_a_markov_head_is_not_exported_as_dspark(tmp_path):
    strategy = DSparkStrategy(DSparkOptions(block_size=5, markov_rank=0, confidence_head_with_markov=False))
    draft = strategy.build_draft(INFO, None)
    with pytest.raises(UserError, match="markov_rank=0"):
        strategy.export(draft, tmp_path, "sglang")


@pytest.mark.parametrize("head_type", ["vanilla", "gated", "rnn"])
def test_proposals_are_what_teacher_forcing_on_them_predicts(head_type):
    strategy, draft = _draft(head_type)
    ids, feats = _sequence()
    p = 6
    state = strategy.begin_decode(draft, ids[:p].tolist(), {"hidden_states": feats[:p]})
    proposal = strategy.propose(draft, state, ids[: p + 1].tolist(), {"hidden_states": feats[:p]}, k=10)
    assert len(proposal) == 5  # every slot of the block, the anchor's included, drafts one token
    forced = ids.clone()
    forced[p + 1: p + 6] = torch.tensor(proposal)  # as if the target had produced the draft's tokens
    logits = _forward(draft, forced, feats, p)["logits"][0, 0]  # [bs, V]: slot k predicts x_{p+k+1}
    assert logits.argmax(-1).tolist() == proposal


def test_the_markov_bias_changes_what_is_proposed():
    strategy, draft = _draft()
    ids, feats = _sequence()
    first = strategy.propose(draft, strategy.begin_decode(draft, [], {}), ids[:7].tolist(),
                             {"hidden_states": feats[:6]}, k=10)
    with torch.no_grad():
        draft.markov_head.markov_w2.weight.zero_()
    plain = strategy.propose(draft, strategy.begin_decode(draft, [], {}), ids[:7].tolist(),
                             {"hidden_states": feats[:6]}, k=10)
    assert first != plain
