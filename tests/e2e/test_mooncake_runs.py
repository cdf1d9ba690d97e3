"""The design card's own command: `specforge run --strategy domino --store mooncake`, on the
embedded default, offline (managed master) and disaggregated; the managed master is gone after."""

from __future__ import annotations

import json
import subprocess

import pytest

from specforge.testing.cli import run_specforge

pytestmark = [pytest.mark.mooncake, pytest.mark.slow]
SHORT = ("--set", "training.max_steps=12", "--set", "eval.enabled=false")


def masters() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "mooncake_master"], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


@pytest.fixture(scope="module")
def demo_assets():
    from specforge.demo.assets import ensure_demo_assets

    return ensure_demo_assets()


@pytest.mark.parametrize("topology", [(), ("--topology", "disaggregated")], ids=["offline", "disaggregated"])
def test_domino_with_a_mooncake_store_trains_to_the_end(demo_assets, tmp_path, topology):
    before = masters()
    run_specforge("run", "--strategy", "domino", "--store", "mooncake", *topology, "--output-dir", str(tmp_path),
                  "--name", "r", *SHORT)
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 13))
    assert (tmp_path / "r" / "export" / "model.safetensors").is_file()
    assert masters() <= before, "the managed master stopped with the run"
