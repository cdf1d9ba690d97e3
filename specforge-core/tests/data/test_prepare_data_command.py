"""`specforge prepare-data`: previews with trained tokens highlighted, plus statistics."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from specforge.commands.prepare_data import command
from specforge.data import DataError, load_samples
from specforge.data.preview import highlight

HELLO = {"id": "hello", "messages": [{"role": "system", "content": "You are terse."},
                                     {"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello!"},
                                     {"role": "user", "content": "Bye"},
                                     {"role": "assistant", "content": "Goodbye."}]}


def test_highlight_wraps_each_trained_run(chatml, write_jsonl):
    (sample,) = load_samples(write_jsonl([HELLO]), chatml, max_length=256).samples
    assert highlight(chatml, sample) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n[[Hello!<|im_end|>\n]]<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n[[Goodbye.<|im_end|>\n]]"
    )


def test_preview_prints_highlighted_samples_and_statistics(chatml, chatml_dir, write_jsonl):
    silent = {"id": "silent", "messages": [{"role": "user", "content": "Anyone?"}]}
    path = write_jsonl([HELLO, "oops", silent])
    result = CliRunner().invoke(command, ["--data", str(path), "--target-model", str(chatml_dir),
                                          "--preview", "1", "--skip-bad-lines", "--no-color"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "=== hello (" in out
    assert "<|im_start|>assistant\n[[Hello!<|im_end|>\n]]<|im_start|>user\nBye" in out
    assert "samples:            1 (of 2 conversations read)" in out
    assert "skipped lines:      1" in out
    assert f"{path}:2: invalid JSON" in out
    (sample,) = load_samples(path, chatml, max_length=512, skip_bad_lines=True).samples
    assert f"tokens:             {len(sample.input_ids)} " in out
    assert "loss tokens:        " in out
    assert "empty-mask samples: 1 (dropped)" in out
    assert "1 sample(s) with no trained token (empty loss mask) dropped: silent" in out


def test_preview_colours_on_request_and_passes_template_arguments(qwen3_dir, write_jsonl):
    path = write_jsonl([{"messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello!"}]}])
    result = CliRunner().invoke(command, ["--data", str(path), "--target-model", str(qwen3_dir),
                                          "--template-arg", "enable_thinking=false", "--color"])
    assert result.exit_code == 0, result.output
    assert "<think>\n\n</think>\n\n\x1b[1;32mHello!<|im_end|>\n\x1b[0m" in result.output


def test_a_bad_line_fails_with_file_and_line(chatml_dir, write_jsonl):
    path = write_jsonl([HELLO, '{"messages": [{"role": "robot", "content": "x"}]}'])
    result = CliRunner().invoke(command, ["--data", str(path), "--target-model", str(chatml_dir)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    assert f"{path}:2: message 0 has unknown role 'robot'" in str(result.exception)


def test_command_module_imports_neither_torch_nor_transformers():
    code = ("import sys, specforge.commands.prepare_data as m; "
            "print(m.command.name, 'torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["prepare-data", "False", "False"]
