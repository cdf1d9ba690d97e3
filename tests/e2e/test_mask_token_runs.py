"""Every method that drafts from a mask token trains end to end on a target whose tokenizer reserves
none, without ``strategy.mask_token_id``: the public resolver picks the next candidate in the
documented order (first unused embedding row, then pad, ...) and the export records it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge

SHORT = ("--set", "training.max_steps=2", "--set", "eval.enabled=false", "--set", "training.batch_size=2")
FIRST_UNUSED_ROW = 259  # the tiny tokenizer has 259 tokens; the fixture's embedding has 272 rows
PAD = 256  # <|endoftext|>, the tiny tokenizer's pad token


def exported_mask_token(export: Path, strategy: str) -> int:
    config = json.loads((export / "config.json").read_text())
    if strategy == "peagle":
        return config["mask_token_id"]
    return config["dflash_config"]["mask_token_id"]


def train(strategy: str, target: Path, chats: Path, out: Path) -> Path:
    run_specforge("run", "--strategy", strategy, "--target-model", str(target), "--data", str(chats),
                  "--output-dir", str(out), "--name", strategy, *SHORT)
    return out / strategy / "export"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["dflash", "domino", "dspark", "peagle"])
def test_a_target_without_a_mask_token_trains_with_the_first_unused_embedding_row(
        strategy, specforge_tiny_target, specforge_chats, tmp_path) -> None:
    tokenizer = json.loads((specforge_tiny_target / "tokenizer_config.json").read_text())
    assert tokenizer.get("mask_token") is None  # the fixture reserves no mask token
    export = train(strategy, specforge_tiny_target, specforge_chats, tmp_path)
    assert exported_mask_token(export, strategy) == FIRST_UNUSED_ROW


@pytest.mark.slow
def test_a_target_without_a_mask_token_or_an_unused_row_trains_with_the_pad_token(
        specforge_chats, tmp_path) -> None:
    from specforge.testing.tiny_models import make_tiny_target

    target = tmp_path / "full-vocab"
    make_tiny_target(target, arch="qwen3", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0,
                     vocab=FIRST_UNUSED_ROW, initializer_range=0.2)  # every embedding row is a token
    export = train("dflash", target, specforge_chats, tmp_path / "runs")
    assert exported_mask_token(export, "dflash") == PAD
