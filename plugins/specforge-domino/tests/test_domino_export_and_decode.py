"""Domino's export adds the head to DFlash's layout; decoding corrects the block slot by slot."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from specforge.testing.synthetic import tiny_target_info
from specforge_dflash.anchors import noise_blocks
from specforge_dflash.labels import block_targets
from specforge_dflash.options import DFlashOptions
from specforge_dflash.strategy import DFlashStrategy
from specforge_domino.options import DominoOptions
from specforge_domino.strategy import DominoStrategy

INFO = tiny_target_info(hidden_size=32, vocab_size=48, num_layers=8, dtype="float64")


def _draft(shift_label=True, prefix=1):
    opts = DominoOptions(block_size=5, num_draft_layers=1, gru_hidden_dim=12, emb_dim=6,
                         shift_label=shift_label, pure_draft_prefix_len=prefix)
    strategy = DominoStrategy(opts)
    torch.manual_seed(0)
    draft = strategy.build_draft(INFO, None)
    with torch.no_grad():
        for p in draft.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        draft.embed_proj[2].weight.normal_(0, 2.0)  # a correction that changes argmaxes
    return strategy, draft


def _forward(draft, ids, feats, p):
    anchors, keep = torch.tensor([[p]]), torch.tensor([[True]])
    blocks = noise_blocks(ids[None], anchors, keep, 5, draft.config.mask_token_id)
    prev = block_targets(ids[None], torch.ones(1, len(ids)), anchors, keep, 5, gamma=None).prev_ids
    with torch.no_grad():
        return draft(feats[None], blocks, anchors, keep, prev_ids=prev)


def _sequence(seed=1, length=16):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 47, (length,), generator=gen),
            torch.randn(length, 32, generator=gen, dtype=torch.float64))


def test_export_adds_exactly_the_gru_and_projection_weights(tmp_path):
    strategy, draft = _draft()
    result = strategy.export(draft, tmp_path, "sglang")
    weights = load_file(str(tmp_path / "model.safetensors"))
    head = {k for k in weights if k.startswith(("prefix_gru.", "embed_proj."))}
    assert head == {"prefix_gru.weight_ih_l0", "prefix_gru.weight_hh_l0", "embed_proj.0.weight",
                    "embed_proj.2.weight"}
    backbone = set(weights) - head  # DFlash's own: fc, hidden_norm, norm and 11 per layer
    assert {"fc.weight", "hidden_norm.weight", "norm.weight"} <= backbone
    assert len(backbone) == 3 + 11 and all(k.startswith("layers.0.") for k in backbone - {
        "fc.weight", "hidden_norm.weight", "norm.weight"})
    assert [list(weights[k].shape) for k in sorted(head)] == [[6, 32 + 12], [48, 6], [36, 12], [36, 32]]
    assert result["architecture"] == "DFlashDraftModel"


def test_export_config_marks_the_domino_projector(tmp_path):
    strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["DFlashDraftModel"]
    expected = {"projector_type": "domino", "gru_hidden_dim": 12, "emb_dim": 6, "shift_label": True,
                "pure_draft_prefix_len": 1, "block_size": 5, "mask_token_id": 47, "target_layer_ids": [4]}
    assert expected.items() <= config["dflash_config"].items()


def test_a_reloaded_export_gives_identical_final_and_base_logits(tmp_path):
    strategy, draft = _draft()
    strategy.export(draft, tmp_path, "sglang")
    loaded = strategy.load_export(tmp_path, INFO)
    ids, feats = _sequence()
    a, b = _forward(draft, ids, feats, 6), _forward(loaded, ids, feats, 6)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["base_logits"], b["base_logits"])


def test_dflash_and_domino_refuse_each_others_exports(tmp_path):
    strategy, draft = _draft()
    strategy.export(draft, tmp_path / "domino", "sglang")
    with pytest.raises(ValueError, match="--strategy domino"):
        DFlashStrategy(DFlashOptions()).load_export(tmp_path / "domino", INFO)
    dflash = DFlashStrategy(DFlashOptions(block_size=5))
    dflash.export(dflash.build_draft(INFO, None), tmp_path / "dflash", "sglang")
    with pytest.raises(ValueError, match="--strategy dflash"):
        strategy.load_export(tmp_path / "dflash", INFO)


@pytest.mark.parametrize(("shift_label", "prefix"), [(True, 1), (False, 0), (False, 1)])
def test_proposals_are_what_teacher_forcing_on_them_predicts(shift_label, prefix):
    strategy, draft = _draft(shift_label, prefix)
    ids, feats = _sequence()
    p = 6
    state = strategy.begin_decode(draft, ids[:p].tolist(), {"hidden_states": feats[:p]})
    proposal = strategy.propose(draft, state, ids[: p + 1].tolist(), {"hidden_states": feats[:p]}, k=10)
    assert len(proposal) == 4
    forced = ids.clone()
    forced[p + 1: p + 5] = torch.tensor(proposal)  # as if the target had produced the draft's tokens
    logits = _forward(draft, forced, feats, p)["logits"][0, 0]  # [bs, V]
    heads = logits[:4] if shift_label else logits[1:]  # the slot predicting x_{p+1} .. x_{p+4}
    assert heads.argmax(-1).tolist() == proposal


def test_the_correction_changes_what_is_proposed():
    strategy, draft = _draft(True, 0)
    ids, feats = _sequence()
    first = strategy.propose(draft, strategy.begin_decode(draft, [], {}), ids[:7].tolist(),
                             {"hidden_states": feats[:6]}, k=10)
    with torch.no_grad():
        draft.embed_proj[2].weight.zero_()
    plain = strategy.propose(draft, strategy.begin_decode(draft, [], {}), ids[:7].tolist(),
                             {"hidden_states": feats[:6]}, k=10)
    assert first != plain
