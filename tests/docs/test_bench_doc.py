"""The `specforge bench` lines of the docs parse with the real command, and the documented prompt
file shape loads with its categories."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from specforge.commands.bench import command

REPO = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
DOCS = sorted({*REPO.glob("docs/**/*.md"), REPO / "README.md"})


def bench_lines() -> list[tuple[str, str]]:
    return [(str(path.relative_to(REPO)), line.strip()) for path in DOCS
            for _, body in FENCE.findall(path.read_text()) for line in body.replace("\\\n", " ").splitlines()
            if line.strip().startswith("specforge bench")]


LINES = bench_lines()


def test_the_docs_show_bench_lines() -> None:
    assert len(LINES) >= 2


@pytest.mark.parametrize(("where", "line"), LINES, ids=[f"{w}:{i}" for i, (w, _) in enumerate(LINES)])
def test_a_documented_bench_line_parses(where: str, line: str) -> None:
    ctx = command.make_context("bench", shlex.split(line)[2:])
    assert ctx.params["paths"], where


def test_the_documented_prompt_file_loads_with_its_categories(specforge_tiny_target, tmp_path) -> None:
    from specforge.data import load_prompts, load_tokenizer

    (block,) = [body for lang, body in FENCE.findall((REPO / "docs" / "bench.md").read_text()) if lang == "json"]
    path = tmp_path / "prompts.jsonl"
    path.write_text(block)
    loaded = load_prompts(path, load_tokenizer(specforge_tiny_target))
    assert [(p.sample_id, p.category) for p in loaded.prompts] == [("chat-1", "math"), ("chat-2", "greeting")]
    assert loaded.prompts[0].reference == "4."
