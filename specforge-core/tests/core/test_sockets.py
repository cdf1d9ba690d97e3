"""specforge.testing.sockets reads this machine's socket tables right: real sockets, classified."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from specforge.testing.sockets import (
    SocketSampler,
    held_by,
    is_loopback,
    new_exposed,
    parse_address,
    parse_table,
    snapshot,
)


def kernel_hex(host: str, port: int) -> str:
    """The address as /proc/net/tcp prints it: each 32-bit word of it as a host-order %08X."""
    packed = ipaddress.ip_address(host).packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def listener(host: str, kind: int = socket.SOCK_STREAM) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, kind)
    s.bind((host, 0))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


def ours(sockets, s: socket.socket):
    port = s.getsockname()[1]
    return [x for x in sockets if x.port == port and x.pid == os.getpid()]


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "0.0.0.0", "::1", "::", "fd00::2", "::ffff:127.0.0.1"])
def test_kernel_addresses_parse_back_to_the_address(host):
    parsed, port = parse_address(kernel_hex(host, 8080))
    assert port == 8080
    assert ipaddress.ip_address(parsed) == ipaddress.ip_address(host)


def test_the_little_endian_form_the_kernel_prints_for_localhost_8080():
    if sys.byteorder != "little":
        pytest.skip("the literal below is what a little-endian kernel prints")
    assert parse_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert parse_address("00000000000000000000000001000000:0050") == ("::1", 80)
    assert parse_address("0000000000000000FFFF00000100007F:0050") == ("::ffff:127.0.0.1", 80)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.9.8.7", True), ("::1", True), ("::ffff:127.0.0.1", True), ("::ffff:127.3.0.1", True),
    ("0.0.0.0", False), ("::", False), ("::ffff:0.0.0.0", False), ("192.0.2.2", False), ("fd00::2", False),
    ("::ffff:10.0.0.1", False),
])
def test_loopback_is_127_slash_8_and_ipv6_one_and_their_mapped_forms(host, loopback):
    assert is_loopback(host) is loopback


def test_only_listening_tcp_and_unconnected_udp_rows_count():
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = "   0: {} 00000000:0000 {} 00000000:00000000 00:00000000 00000000  1000        0 {} 1 0000\n"
    text = header + "".join(row.format(kernel_hex("0.0.0.0", port), state, inode) for port, state, inode in [
        (8080, "0A", 11), (8081, "01", 12), (8082, "07", 13)])  # LISTEN, ESTABLISHED, CLOSE
    assert [(s.port, s.inode) for s in parse_table("tcp", text)] == [(8080, 11)]
    assert [(s.port, s.inode) for s in parse_table("udp", text)] == [(8082, 13)]


def test_real_sockets_on_loopback_and_on_every_interface_are_told_apart():
    opened = [listener("127.0.0.1"), listener("0.0.0.0"), listener("127.0.0.1", socket.SOCK_DGRAM),
              listener("0.0.0.0", socket.SOCK_DGRAM)]
    bound_only = socket.socket()
    bound_only.bind(("0.0.0.0", 0))  # bound but not listening: nobody can connect to it
    try:
        now = snapshot(os.getpid())
        found = [ours(now, s) for s in opened]
        assert [[(x.proto, x.host, x.loopback) for x in f] for f in found] == [
            [("tcp", "127.0.0.1", True)], [("tcp", "0.0.0.0", False)],
            [("udp", "127.0.0.1", True)], [("udp", "0.0.0.0", False)]]
        assert not ours(now, bound_only)
        assert all(x.command for f in found for x in f), "the owner's command name is read"
    finally:
        for s in [*opened, bound_only]:
            s.close()


def test_ipv6_listeners_are_read_from_tcp6():
    try:
        wild, local = listener("::"), listener("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 on this machine ({exc})")
    try:
        now = snapshot(os.getpid())
        assert [(x.proto, x.host, x.loopback) for x in ours(now, wild)] == [("tcp6", "::", False)]
        assert [(x.proto, x.host, x.loopback) for x in ours(now, local)] == [("tcp6", "::1", True)]
    finally:
        wild.close()
        local.close()


def test_new_exposed_keeps_only_new_sockets_off_loopback():
    keep = listener("0.0.0.0")
    try:
        before = snapshot(os.getpid())
        fresh, fresh_local = listener("0.0.0.0"), listener("127.0.0.1")
        after = snapshot(os.getpid())
        assert [s.port for s in new_exposed(before, after)] == [fresh.getsockname()[1]]
        fresh.close()
        fresh_local.close()
    finally:
        keep.close()


CHILD = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen()
    print(s.getsockname()[1], flush=True)
    time.sleep(float(sys.argv[2]))
""")


def child_listener(host: str, seconds: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, host, str(seconds)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def test_the_sampler_catches_a_short_lived_child_listener_and_names_its_pid():
    with SocketSampler(interval_s=0.05) as sampler:
        wild, wild_port = child_listener("0.0.0.0", 0.4)
        local, local_port = child_listener("127.0.0.1", 0.4)
        assert wild.wait(30) == 0 and local.wait(30) == 0
    assert sampler.samples >= 5
    assert [(s.port, s.pid) for s in sampler.exposed()] == [(wild_port, wild.pid)]
    assert {s.port for s in sampler.new()} == {wild_port, local_port}
    after = snapshot(None)
    assert all(s.port != wild_port for s in after), "the child's listener is gone: only the sampler saw it"


def test_a_sampler_rooted_elsewhere_ignores_this_process():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with SocketSampler(root=sleeper.pid) as sampler:
            mine = listener("0.0.0.0")
            time.sleep(0.2)
        assert sampler.samples >= 2
        assert not sampler.new(), "a socket of a process outside the tree was counted"
        mine.close()
        with SocketSampler(root=None) as machine:  # the whole machine sees it
            mine = listener("0.0.0.0")
            time.sleep(0.2)
        assert mine.getsockname()[1] in {s.port for s in machine.exposed()}
        mine.close()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_held_by_lists_the_listeners_of_the_given_processes_only():
    mine = listener("127.0.0.1")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert mine.getsockname()[1] in {s.port for s in held_by([os.getpid()])}
        assert mine.getsockname()[1] not in {s.port for s in held_by([sleeper.pid])}
    finally:
        sleeper.kill()
        sleeper.wait()
        mine.close()
