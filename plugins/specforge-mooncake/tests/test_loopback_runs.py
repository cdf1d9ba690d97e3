"""A real `specforge run --store mooncake` on the embedded demo listens only on loopback: the run,
its managed master (in its own session) and the producers it starts, sampled every ~50 ms.

The run's Mooncake clients take their ports from ``MOONCAKE_PORTS`` (Mooncake's
``MC_MIN_RPC_PORT``/``MC_MAX_RPC_PORT``), so the disaggregated test can tell them from the
control plane's TCPStore, which is not this plugin's.
"""

from __future__ import annotations

import os

import pytest

from specforge.testing.cli import run_specforge
from specforge.testing.sockets import Socket, SocketSampler, describe

pytestmark = [pytest.mark.mooncake, pytest.mark.slow]
# The first 64 conversations: enough for 4 batches and seconds of traffic to sample (all 4200 take minutes).
SHORT = ("--set", "training.max_steps=4", "--set", "eval.enabled=false", "--set", "data.max_samples=64")
MOONCAKE_PORTS = range(21000, 22000)
PORT_ENV = {"MC_MIN_RPC_PORT": str(MOONCAKE_PORTS.start), "MC_MAX_RPC_PORT": str(MOONCAKE_PORTS.stop - 1)}


@pytest.fixture(scope="module")
def demo_assets():
    from specforge.demo.assets import ensure_demo_assets

    return ensure_demo_assets()


def sampled_run(tmp_path, *args: str) -> list[Socket]:
    with SocketSampler() as sampler:
        run_specforge("run", "--strategy", "eagle3", "--store", "mooncake", *args, "--output-dir", str(tmp_path),
                      "--name", "r", *SHORT, env=PORT_ENV, timeout=600)
    assert (tmp_path / "r" / "metrics.jsonl").is_file()
    return sampler.new()


def mooncake_sockets(new: list[Socket]) -> tuple[list[Socket], list[Socket]]:
    """(the managed master's, the run's Mooncake clients'), each checked to be there at all."""
    master = [s for s in new if s.command == "mooncake_master"]
    clients = [s for s in new if s.command != "mooncake_master" and s.port in MOONCAKE_PORTS]
    assert master, f"the managed master was not seen: {describe(new)}"
    assert clients and os.getpid() not in {s.pid for s in clients}, f"no client listeners of the run: {describe(new)}"
    return master, clients


def test_an_eagle3_run_with_a_mooncake_store_listens_only_on_loopback(demo_assets, tmp_path):
    new = sampled_run(tmp_path)
    mooncake_sockets(new)
    exposed = [s for s in new if not s.loopback]
    assert not exposed, f"listening beyond loopback: {describe(exposed)}"


def test_a_disaggregated_run_keeps_mooncake_on_loopback(demo_assets, tmp_path):
    new = sampled_run(tmp_path, "--topology", "disaggregated")
    master, clients = mooncake_sockets(new)
    assert len({s.pid for s in clients}) >= 2, f"the producers' clients were not seen: {describe(clients)}"
    exposed = [s for s in master + clients if not s.loopback]
    assert not exposed, f"Mooncake listening beyond loopback: {describe(exposed)}"
    others = [s for s in new if not s.loopback and s not in master + clients]
    assert not others, f"other listeners beyond loopback (control plane, process group): {describe(others)}"
