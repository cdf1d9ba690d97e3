"""A run's memory does not grow with its data file: 100k conversations cost what 10k do.

Each run is a real ``specforge run`` (online, two steps) from a generated JSONL, so it streams the
file through tokenization into the tokenized cache and trains from that; its peak RSS is read
from the kernel (``ru_maxrss`` of a wrapper's children: the run and its tokenize workers). Holding
the corpus in memory instead would cost the 100k file's ~5M tokens as Python objects, well over
a hundred MiB more than the 10k run; measured 2026-12-02 at twice these sizes: 381 MiB for 20k,
410 MiB for 200k (the sizes were halved for the test suite's time budget).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GROWTH_LIMIT_MIB = 48
_PEAK = r"""
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr[-3000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB, the largest child
sys.exit(done.returncode)
"""


def write_chats(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            a, b = i % 97, (i * 7) % 89
            f.write(json.dumps({"id": f"c{i}", "messages": [
                {"role": "user", "content": f"add {a} and {b}"},
                {"role": "assistant", "content": f"{a} plus {b} is {a + b}"}]}) + "\n")
    return path


def peak_rss_mib(target: Path, data: Path, out: Path) -> float:
    command = [str(Path(sys.executable).with_name("specforge")), "run", "--strategy", "eagle3",
               "--topology", "online", "--target-model", str(target), "--data", str(data),
               "--output-dir", str(out), "--name", data.stem, "--set", "training.max_steps=2",
               "--set", "training.batch_size=2", "--set", "eval.enabled=false",
               "--set", "strategy.draft_vocab_size=64"]
    done = subprocess.run([sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert f"{data.stem.removeprefix('chats-')} training samples" in done.stderr, done.stderr
    return int(done.stdout.split()[-1]) / 1024


def test_peak_rss_of_a_run_does_not_grow_with_its_data_file(specforge_tiny_target: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPECFORGE_CACHE_DIR", str(tmp_path / "cache"))  # tokenized here, not in the shared cache
    small = peak_rss_mib(specforge_tiny_target, write_chats(tmp_path / "chats-10000.jsonl", 10_000), tmp_path)
    large = peak_rss_mib(specforge_tiny_target, write_chats(tmp_path / "chats-100000.jsonl", 100_000), tmp_path)
    assert large - small <= GROWTH_LIMIT_MIB, f"10k conversations: {small:.0f} MiB, 100k: {large:.0f} MiB"
