"""The kept weight lists (``specforge_sglang.draft_weights``) equal what SGLang 0.5.23's draft classes load.

Exports are built from the kept lists and loaded into SGLang's own ``LlamaForCausalLMEagle3``
and ``DFlashDraftModel`` (``sglang_probe``, one subprocess for all of them): every listed
weight must reach a parameter (except the ones the list marks as deliberately skipped by
SGLang), every SGLang parameter must be filled, and a name outside the list must be ignored
by SGLang too, so the list and SGLang agree in both directions. (The export hook's own call of
the probe, where SGLang is installed, runs in ``test_sglang_run_eagle3``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specforge_sglang.draft_weights import EXPECTED_BY_ARCHITECTURE
from specforge_sglang.export_check import check_export_dir, result_problems
from specforge_sglang.testing import dflash_config, eagle3_config, write_export

CONFIGS = {
    "eagle3": eagle3_config(),
    "eagle3-bias": eagle3_config(bias=True),
    "eagle3-full-vocab": eagle3_config(draft_vocab_size=272),
    "dflash": dflash_config(),
    "dflash-attention-bias": dflash_config(attention_bias=True),
    "domino": dflash_config(domino=True),
}
STRAY = {"midlayer.self_attn.rotary_emb.inv_freq": (8,)}  # a name SGLang's loader skips
EMPTY_MASK_TOKEN = dflash_config()
EMPTY_MASK_TOKEN["dflash_config"]["mask_token"] = ""  # the kept list does not look at it; SGLang refuses it


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("probe")
    dirs = {name: write_export(root / name, config) for name, config in CONFIGS.items()}
    dirs["eagle3-stray"] = write_export(root / "eagle3-stray", CONFIGS["eagle3"], extra=STRAY)
    dirs["dflash-empty-mask-token"] = write_export(root / "dflash-empty-mask-token", EMPTY_MASK_TOKEN)
    done = subprocess.run([sys.executable, "-m", "specforge_sglang.sglang_probe", *map(str, dirs.values())],
                          capture_output=True, text=True, timeout=900, check=False)
    lines = [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert done.returncode == 0 and len(lines) == len(dirs), done.stderr[-3000:]
    return {name: line for name, line in zip(dirs, lines)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sglang_loads_every_kept_weight_and_nothing_is_left_empty(probed: dict, name: str) -> None:
    result = probed[name]
    config = CONFIGS[name]
    expected = EXPECTED_BY_ARCHITECTURE[config["architectures"][0]](config)
    assert result["error"] is None
    assert set(result["loaded"]) == set(expected.loaded)
    assert set(result["ignored"]) == set(expected.accepted_unused)
    assert result["uncovered"] == []
    assert result_problems(result, expected) == []


def test_a_weight_outside_the_list_is_ignored_by_sglang_too(probed: dict, tmp_path: Path) -> None:
    assert set(probed["eagle3-stray"]["ignored"]) == {"t2d", *STRAY}
    out = write_export(tmp_path, CONFIGS["eagle3"], extra=STRAY)
    assert check_export_dir(out, strategy="eagle3", probe=False) == [
        "unexpected weight midlayer.self_attn.rotary_emb.inv_freq: SGLang's LlamaForCausalLMEagle3 would ignore "
        "it silently"]


def test_what_sglang_refuses_beyond_the_list_becomes_a_problem(probed: dict, tmp_path: Path) -> None:
    out = write_export(tmp_path, EMPTY_MASK_TOKEN)
    assert check_export_dir(out, strategy="dflash", probe=False) == []
    expected = EXPECTED_BY_ARCHITECTURE["DFlashDraftModel"](EMPTY_MASK_TOKEN)
    problems = result_problems(probed["dflash-empty-mask-token"], expected)
    assert len(problems) == 1 and problems[0].startswith("SGLang cannot build or load this draft")
    assert "mask_token" in problems[0]
