"""Nothing the mooncake store starts listens beyond loopback unless the user asks for it.

Each test samples the machine's listening sockets (every ~50 ms) while the store works, over
this process and every process below it (the managed master in its own session, a client
that attaches from the descriptor, a whole ``specforge run``), and asserts that every new
listener is on 127.0.0.0/8. Each also asserts that the sampler saw the listeners it expects, so
an empty result cannot come from looking in the wrong place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from specforge.contracts import FeatureRecord
from specforge.testing.sockets import SocketSampler, describe, snapshot
from specforge.testing.store_kit import assert_same_tensors, kit_sample
from specforge_mooncake.errors import MooncakeExposedError
from specforge_mooncake.master import MasterProcess, free_port, pid_running, port_open
from specforge_mooncake.options import MooncakeStoreOptions
from specforge_mooncake.store import LOCAL_HOSTNAME_ENV, MooncakeStore

pytestmark = pytest.mark.mooncake
SEGMENT = 64 << 20
LISTEN_HOST_ENV = "SPECFORGE_MOONCAKE_LISTEN_HOST"  # the README's name for it

WRITER = textwrap.dedent("""
    import json, sys
    from specforge.contracts import FeatureKey
    from specforge.testing.store_kit import kit_sample
    from specforge_mooncake.store import MooncakeStore

    store = MooncakeStore.attach(json.loads(sys.argv[1]))
    record = store.put(FeatureKey("lo", "from-child", 0), kit_sample(7))
    print(json.dumps(record.to_json()), flush=True)
    sys.stdin.readline()  # stay connected (and listening) until the parent has read the sample
    store.close()
""")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (LOCAL_HOSTNAME_ENV, LISTEN_HOST_ENV)}
    return {**env, **extra}


def pids_of(sockets, command: str) -> set[int]:
    return {s.pid for s in sockets if s.command == command}


def round_trip_between_two_processes(env: dict[str, str], **options) -> SocketSampler:
    """A managed store here, a client attached from its descriptor in a child that puts, a get here."""
    with SocketSampler() as sampler:
        store = MooncakeStore(MooncakeStoreOptions(global_segment_size=SEGMENT, lease_ttl_ms=500, **options),
                              namespace="lo")
        sampler.sample()  # Mooncake's calls hold the GIL, which pauses the sampler's thread
        master_pid = store.master.pid
        child = subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(store.descriptor())], text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(**env))
        try:
            line = child.stdout.readline()
            assert line, f"the attached writer exited with {child.wait(30)}"
            record = FeatureRecord.from_json(json.loads(line))
            assert_same_tensors(store.get(record), kit_sample(7), "written by the child, read by the owner")
        finally:
            child.communicate("\n", timeout=60)
            store.close()
    assert child.returncode == 0
    new = sampler.new()
    assert master_pid in pids_of(new, "mooncake_master"), f"the managed master's ports were not seen: {describe(new)}"
    python = [s for s in new if s.pid in (os.getpid(), child.pid)]
    assert {s.pid for s in python} == {os.getpid(), child.pid}, f"a client's listeners were not seen: {describe(new)}"
    return sampler


@pytest.mark.parametrize("env", [{}, {LOCAL_HOSTNAME_ENV: "127.0.0.1"}], ids=["descriptor", "env-hostname"])
def test_a_put_and_get_between_two_processes_listens_only_on_loopback(env):
    sampler = round_trip_between_two_processes(env)
    assert not sampler.exposed(), f"listening beyond loopback: {describe(sampler.exposed())}"


@pytest.fixture
def http_metadata_server() -> Iterator[str]:
    """Mooncake's own Python metadata server on 127.0.0.1 (the master's would bind every interface)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mooncake.http_metadata_server", "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "the metadata server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/metadata"
    finally:
        proc.kill()
        proc.wait()


def test_with_an_http_metadata_server_clients_advertise_the_loopback_address_they_listen_on(http_metadata_server):
    """Without P2P handshake Mooncake advertises the machine's first LAN address unless told otherwise;
    a client listening on loopback must advertise loopback, or its peers cannot reach it."""
    sampler = round_trip_between_two_processes({}, metadata_server=http_metadata_server)
    assert not sampler.exposed(), f"listening beyond loopback: {describe(sampler.exposed())}"


def test_every_listener_of_the_client_binds_the_address_it_advertises(owner_options):
    before = {s.inode for s in snapshot(os.getpid())}
    store = MooncakeStore(owner_options(global_segment_size=0), namespace="lo")
    try:
        new = [s for s in snapshot(os.getpid()) if s.inode not in before]
        assert len(new) >= 2, f"expected the RPC and TCP transport listeners, found {describe(new)}"
        assert {s.host for s in new} <= {"127.0.0.1", "::ffff:127.0.0.1"}, describe(new)
    finally:
        store.close()


def test_listen_host_every_interface_is_what_the_user_gets_when_asking(owner_options):
    """The explicit multi-machine setting exposes the client's ports; the sampler sees that."""
    with SocketSampler() as sampler:
        store = MooncakeStore(owner_options(listen_host="0.0.0.0", global_segment_size=0), namespace="lo")
        sampler.sample()  # Mooncake's calls hold the GIL: sample while the store is surely open
        store.close()
    exposed = [s for s in sampler.exposed() if s.pid == os.getpid()]
    assert len(exposed) >= 2, f"expected the RPC and TCP listeners on every interface: {describe(sampler.new())}"
    assert {s.host for s in exposed} <= {"0.0.0.0", "::"}


def machine_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one (for the named-interface case)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True,
                         check=False).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    return None


def test_a_named_address_binds_that_interface_only(master):
    address = machine_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with SocketSampler() as sampler:
        store = MooncakeStore(MooncakeStoreOptions(master_address=master.address, local_hostname=address,
                                                   global_segment_size=0), namespace="lo")
        sampler.sample()
        store.close()
    mine = [s for s in sampler.new() if s.pid == os.getpid()]
    assert len(mine) >= 2, describe(sampler.new())
    assert {s.host for s in mine} <= {address, f"::ffff:{address}"}, describe(mine)


REFUSE = textwrap.dedent("""
    import contextlib, sys
    from specforge_mooncake import bind_guard
    from specforge_mooncake.errors import MooncakeError
    from specforge_mooncake.options import MooncakeStoreOptions
    from specforge_mooncake.store import MooncakeStore

    bind_guard.confine = lambda address: contextlib.nullcontext()  # as if the rewrite had no effect
    try:
        MooncakeStore(MooncakeStoreOptions(master_address=sys.argv[1], global_segment_size=0))
    except MooncakeError as exc:
        print(exc)
        sys.exit(3)
""")


def test_a_client_whose_listeners_escape_the_rewrite_refuses_to_run(master):
    proc = subprocess.run([sys.executable, "-c", REFUSE, master.address], capture_output=True, text=True,
                          timeout=120, env=child_env(), check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "refusing to run with features exposed" in proc.stdout
    assert "0.0.0.0" in proc.stdout or "[::]" in proc.stdout, proc.stdout


def test_a_master_with_a_listener_off_its_host_is_stopped_and_refused():
    master = MasterProcess(extra_args=("-metrics_host=0.0.0.0",))  # the last flag wins: metrics on every interface
    try:
        with pytest.raises(MooncakeExposedError, match=r"0\.0\.0\.0:\d+ \(pid \d+ mooncake_master\)"):
            master.start()
        assert master.pid is not None and not pid_running(master.pid)
    finally:
        master.stop()
