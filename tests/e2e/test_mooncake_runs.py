"""The design card's own command: `specforge run --strategy domino --store mooncake`, on the
embedded default, offline (managed master) and disaggregated; the managed master is gone after."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from specforge.testing.cli import run_specforge

pytestmark = [pytest.mark.mooncake, pytest.mark.slow]
# 12 batches of 8 from the first 128 conversations (capturing all 4200 takes minutes).
SHORT = ("--set", "training.max_steps=12", "--set", "eval.enabled=false", "--set", "data.max_samples=128")


def masters(tag: str) -> set[int]:
    """Running mooncake_master processes started under this test's ``tag`` (other tests run beside it)."""
    out = subprocess.run(["pgrep", "-f", "mooncake_master"], capture_output=True, text=True, check=False).stdout
    mine = set()
    for pid in map(int, out.split()):
        try:
            if f"SPECFORGE_TEST_TAG={tag}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                mine.add(pid)
        except OSError:
            continue
    return mine


@pytest.fixture(scope="module")
def demo_assets():
    from specforge.demo.assets import ensure_demo_assets

    return ensure_demo_assets()


@pytest.mark.parametrize("topology", [(), ("--topology", "disaggregated")], ids=["offline", "disaggregated"])
def test_domino_with_a_mooncake_store_trains_to_the_end(demo_assets, tmp_path, topology):
    tag = uuid.uuid4().hex
    run_specforge("run", "--strategy", "domino", "--store", "mooncake", *topology, "--output-dir", str(tmp_path),
                  "--name", "r", *SHORT, env={"SPECFORGE_TEST_TAG": tag})
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 13))
    assert (tmp_path / "r" / "export" / "model.safetensors").is_file()
    assert not masters(tag), "the managed master stopped with the run"
