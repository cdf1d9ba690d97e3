"""``specforge prepare-data --regenerate --target-engine sglang`` writes exactly what the hf engine writes."""

from __future__ import annotations

import json
from pathlib import Path

from specforge.data import load_tokenizer
from specforge.data.regenerate import regenerate
from specforge.evaluation.evaluate import stop_ids
from specforge.testing.cli import run_specforge


def test_regenerated_answers_equal_the_hf_engines(harness_target_dir: Path, hf_engine, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"add {i} and 2"}, {"role": "assistant", "content": "old answer"}]}) + "\n"
        for i in range(4)))
    out = tmp_path / "sglang.jsonl"
    run_specforge("prepare-data", "--data", str(data), "--target-model", str(harness_target_dir), "--regenerate",
                  str(out), "--target-engine", "sglang", "--max-new-tokens", "12", "--preview", "0", timeout=600)
    tokenizer = load_tokenizer(str(harness_target_dir))
    want = tmp_path / "hf.jsonl"
    regenerate([data], hf_engine, tokenizer, want, max_new_tokens=12, stop_ids=stop_ids(tokenizer))
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and all("old answer" not in line for line in lines)
    assert lines == want.read_text().splitlines()
