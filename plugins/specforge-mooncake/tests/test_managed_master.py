"""A managed master lives exactly as long as its store: closed, raised through, killed, interrupted.

Each ending runs in a real child process that owns the store; the test reads the master's PID
from the child and checks the master is gone afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from specforge.contracts import FeatureKey
from specforge_mooncake.master import MasterProcess, pid_running, port_open
from specforge_mooncake.options import MooncakeStoreOptions
from specforge_mooncake.store import MooncakeStore

pytestmark = pytest.mark.mooncake

# The owner first puts Ctrl-C and Ctrl-\ at their defaults, as a shell gives a foreground command:
# the test worker may fork while another of its threads ignores them (the dance C's system() does),
# and Python installs no handler for a SIGINT ignored at start. Seen in full suite runs: the hung
# owner's SigIgn held SIGINT and SIGQUIT.
_OWNER = r"""
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGQUIT, signal.SIG_DFL)
import json, sys, time
from specforge_mooncake.options import MooncakeStoreOptions
from specforge_mooncake.store import MooncakeStore

store = MooncakeStore(MooncakeStoreOptions(global_segment_size=16 << 20, lease_ttl_ms=500), root=sys.argv[2])
print("MASTER " + json.dumps({"pid": store.master.pid, "address": store.master_address}), flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("the run failed")
time.sleep(120)
"""


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def _start_owner(mode: str, root: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, mode, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    line = proc.stdout.readline()
    assert line.startswith("MASTER "), f"the owner did not start its master: {line!r} {proc.stderr.read()[-2000:]}"
    pid = json.loads(line.removeprefix("MASTER "))["pid"]
    assert pid_running(pid)
    return proc, pid


def _signal_state(pid: int) -> str:
    """What the kernel says of a process's signals, and per thread which ones it blocks (hex masks)."""
    keys = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    own = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(keys)]
    threads = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        status = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines() if ":\t" in line)
        threads.append(f"{task.name} {status.get('Name', '?')} blk={status.get('SigBlk', '?')}")
    return "; ".join(own) + " | threads: " + ", ".join(threads)


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pid_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_managed_master_serves_clients_of_the_descriptor_and_stops_with_the_store(tmp_path):
    with MooncakeStore(MooncakeStoreOptions(global_segment_size=16 << 20, lease_ttl_ms=500), root=tmp_path) as store:
        pid = store.master.pid
        host, port = store.master_address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert store.descriptor()["master_address"] == store.master_address
        record = store.put(FeatureKey("features", "a", 0), {"x": torch.arange(6).reshape(2, 3)})
        reader = MooncakeStore.from_descriptor(store.descriptor())  # attaches, starts no master of its own
        assert reader.master is None
        assert torch.equal(reader.get(record)["x"], torch.arange(6).reshape(2, 3))
        reader.close()
        assert pid_running(pid), "a client closing must not stop the master"
    assert not pid_running(pid)
    assert "Master service started" in (tmp_path / "mooncake-master.log").read_text()


def test_a_managed_master_stops_when_the_block_raises():
    with pytest.raises(RuntimeError, match="boom"), MooncakeStore(MooncakeStoreOptions(global_segment_size=0)) as store:
        pid = store.master.pid
        raise RuntimeError("boom")
    assert not pid_running(pid)


def test_a_managed_master_stops_when_the_run_raises_uncaught(tmp_path):
    proc, pid = _start_owner("raise", tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "the run failed" in err
    assert not pid_running(pid), "the master outlived a run that raised"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_managed_master_stops_when_its_owner_is_signalled(signum, tmp_path):
    proc, pid = _start_owner("wait", tmp_path)
    proc.send_signal(signum)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        state = _signal_state(proc.pid)
        proc.kill()
        proc.communicate()
        pytest.fail(f"the owner did not die of {signal.Signals(signum).name} within 60 s; then: {state}")
    assert proc.returncode == -signum, "the owner should die of the signal it got"
    assert not pid_running(pid), f"the master outlived its owner's {signal.Signals(signum).name}"


def test_a_managed_master_stops_when_its_owner_is_killed(tmp_path):
    proc, pid = _start_owner("wait", tmp_path)
    proc.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal stops the master
    proc.communicate(timeout=60)
    assert _gone_within(pid, 15), "the master outlived its SIGKILLed owner"


def test_the_master_command_prints_the_address_clients_use_and_stops_on_sigterm(owner_options):
    from specforge_mooncake.master import free_port

    rpc, metrics = free_port(), free_port()
    cmd = [sys.executable, "-m", "specforge", "mooncake", "master", "--rpc-port", str(rpc),
           "--metrics-port", str(metrics), "--lease-ttl", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        first = proc.stdout.readline()
        assert f"listening on 127.0.0.1:{rpc}" in first, first + proc.stderr.read()[-2000:] if proc.poll() else first
        assert f"--set store.master_address=127.0.0.1:{rpc} " in proc.stdout.readline()
        pid = int(first.split("(pid ")[1].split(",")[0])
        store = MooncakeStore(owner_options(master_address=f"127.0.0.1:{rpc}", global_segment_size=16 << 20))
        record = store.put(FeatureKey("features", "cli", 0), {"x": torch.ones(3)})
        assert torch.equal(store.get(record)["x"], torch.ones(3))
        store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert not pid_running(pid), "the master outlived `specforge mooncake master`"


def test_a_forked_child_never_stops_its_parents_master():
    """A child forked after the master started (a fork-start worker pool) inherits this module's table
    of masters and its signal handlers; a SIGTERM to it (``Pool.terminate``) must not stop the parent's
    master. Seen in a full suite run: a session master got "Shutdown signal received" while its worker
    ran other tests."""
    master = MasterProcess().start()
    try:
        child = os.fork()
        if child == 0:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        time.sleep(0.5)  # a master told to stop exits within milliseconds
        assert pid_running(master.pid) and port_open("127.0.0.1", master.rpc_port), \
            "a SIGTERM to a forked child stopped its parent's master"
    finally:
        master.stop()
