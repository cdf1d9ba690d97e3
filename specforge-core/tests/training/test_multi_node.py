"""Two nodes on one machine: `specforge run --nnodes 2 --node-rank R` twice over 127.0.0.1.

The same command with node ranks 0 and 1 (one process each) trains to the end and ends with
weights equal, bit for bit, to a single-node two-process run (gloo, CPU); a node that never
joins makes the other fail within the join timeout, naming the missing node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from specforge.testing.cli import run_specforge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from specforge.testing.tiny_models import make_tiny_target

    root = tmp_path_factory.mktemp("nodes")
    make_tiny_target(root / "target", num_layers=4, hidden=32, heads=2, kv_heads=1, seed=0)
    chats = root / "chats.jsonl"
    chats.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"say {i}"}, {"role": "assistant", "content": f"{i} plus {i}"}]}) + "\n"
        for i in range(8)))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common(world: Path, out: Path, name: str) -> list[str]:
    return ["run", "--strategy", "example-medusa", "--target-model", str(world / "target"), "--data",
            str(world / "chats.jsonl"), "--output-dir", str(out), "--name", name, "--set", "training.batch_size=2",
            "--set", "eval.enabled=false", "--set", "export.enabled=false"]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "specforge", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def final_weights(run_dir: Path) -> dict:
    ckpt = sorted((run_dir / "checkpoints").iterdir())[-1]
    return load_file(str(ckpt / "draft.safetensors"))


def test_two_nodes_train_exactly_like_one_node_with_two_processes(world, tmp_path):
    run_specforge(*common(world, tmp_path, "single"), "--nproc-per-node", "2")
    port = str(free_port())
    nodes = [start(*common(world, tmp_path, "multi"), "--nnodes", "2", "--node-rank", str(rank),
                   "--master-addr", "127.0.0.1", "--master-port", port) for rank in (1, 0)]  # rank 1 first
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    single, multi = final_weights(tmp_path / "single"), final_weights(tmp_path / "multi")
    assert single.keys() == multi.keys()
    for name in single:
        assert single[name].equal(multi[name]), name


def test_a_node_that_never_joins_fails_the_others_naming_it(world, tmp_path):
    port = str(free_port())
    started = time.monotonic()
    proc = run_specforge(*common(world, tmp_path, "lonely"), "--nnodes", "2", "--node-rank", "0",
                         "--master-addr", "127.0.0.1", "--master-port", port, "--set", "training.join_timeout_s=5",
                         check=False)
    assert proc.returncode == 2, proc.stderr
    assert "node(s) 1 of 2 did not join the process group at 127.0.0.1:" in proc.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "lonely").exists()


def test_a_node_without_node_0_fails_naming_node_0(world, tmp_path):
    proc = run_specforge(*common(world, tmp_path, "orphan"), "--nnodes", "2", "--node-rank", "1",
                         "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                         "--set", "training.join_timeout_s=5", check=False)
    assert proc.returncode == 2, proc.stderr
    assert "could not reach node 0 at 127.0.0.1:" in proc.stderr


def test_several_nodes_need_a_fixed_port(world, tmp_path):
    proc = run_specforge(*common(world, tmp_path, "x"), "--nnodes", "2", "--plan", check=False)
    assert proc.returncode == 2 and "fixed --master-port" in proc.stderr
