"""`prepare-data --regenerate`: assistant turns become the target's own greedy answers."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM, AutoTokenizer

from specforge.commands.prepare_data import command


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    path = tmp_path_factory.mktemp("t") / "tiny"
    make_tiny_target(path, num_layers=2, hidden=32, heads=2, kv_heads=1, seed=1, initializer_range=0.2)
    return path


def test_regenerated_turns_are_the_targets_greedy_answers(target, tmp_path):
    data = tmp_path / "chats.jsonl"
    rows = [{"id": "a", "messages": [{"role": "user", "content": "add 1 and 2"},
                                     {"role": "assistant", "content": "three"},
                                     {"role": "user", "content": "and 3 more"},
                                     {"role": "assistant", "content": "six"}]},
            {"id": "b", "messages": [{"role": "user", "content": "copy 4 5"},
                                     {"role": "assistant", "content": "4 5"}]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "regenerated.jsonl"
    result = CliRunner().invoke(command, ["--data", str(data), "--target-model", str(target), "--regenerate",
                                          str(out), "--max-new-tokens", "6", "--preview", "0"])
    assert result.exit_code == 0, result.output
    assert "regenerated 3 assistant turns in 2 conversations" in result.output
    new = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in new] == ["a", "b"]

    tok = AutoTokenizer.from_pretrained(str(target))
    model = AutoModelForCausalLM.from_pretrained(str(target)).eval()
    stops = {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}
    for row in new:  # recompute each turn with plain transformers, from the regenerated history
        msgs = row["messages"]
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            prompt = tok.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True)
            ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                gen = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=sorted(stops),
                                     pad_token_id=tok.pad_token_id or 0)[0, ids.shape[1]:].tolist()
            expected = tok.decode([t for t in gen if t not in stops]).strip()
            assert m["content"] == expected, (row["id"], i)
    assert new[0]["messages"][0] == rows[0]["messages"][0], "user turns are kept"


def test_regenerate_passes_engine_options_and_rejects_unknown_ones(target, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "x"}]}) + "\n")
    base = ["--data", str(data), "--target-model", str(target), "--regenerate", str(tmp_path / "o.jsonl"),
            "--max-new-tokens", "3", "--preview", "0"]
    ok = CliRunner().invoke(command, [*base, "--set", "target_engine.batch_size=1"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(command, [*base, "--set", "target_engine.batchsize=1"])
    assert bad.exit_code != 0
    assert "unknown key target_engine.batchsize (did you mean 'batch_size'?)" in str(bad.exception)
    wrong = CliRunner().invoke(command, [*base, "--set", "training.lr=1"])
    assert "prepare-data takes only target_engine.KEY=VALUE" in str(wrong.exception)
