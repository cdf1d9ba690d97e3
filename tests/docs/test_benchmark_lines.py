"""Every `python benchmarks/train_throughput.py ...` line of the docs parses with the script's own
argument parser and names presets the script has, so a reader can paste any of them."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "train_throughput.py"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
DOCS = sorted({*REPO.glob("docs/**/*.md"), REPO / "README.md"})


def bench_lines() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for _, body in FENCE.findall(path.read_text()):
            for raw in body.replace("\\\n", " ").splitlines():
                line = raw.split(" #", 1)[0].strip()
                if line.startswith("python benchmarks/train_throughput.py"):
                    found.append((str(path.relative_to(REPO)), line))
    return found


LINES = bench_lines()


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_throughput
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return train_throughput


def test_the_docs_show_benchmark_lines() -> None:
    assert len(LINES) >= 5, LINES


@pytest.mark.parametrize(("where", "line"), LINES, ids=[f"{w}:{i}" for i, (w, _) in enumerate(LINES)])
def test_a_documented_benchmark_line_parses(bench, where: str, line: str) -> None:
    args = bench.build_parser().parse_args(shlex.split(line)[2:])
    presets = bench.preset_names(args.preset)
    assert set(presets) <= set(bench.PRESETS), (where, presets)
    if args.strategy != "all":
        assert set(args.strategy.split(",")) <= set(bench.STRATEGIES), (where, args.strategy)
