"""Which address the store's listeners bind, from the options and the attach path (no master needed)."""

from __future__ import annotations

import pytest

from specforge_mooncake.errors import MooncakeError
from specforge_mooncake.listeners import bind_address
from specforge_mooncake.options import MooncakeStoreOptions
from specforge_mooncake.store import LISTEN_HOST_ENV, LOCAL_HOSTNAME_ENV, attach_options


def descriptor(**options) -> dict:
    return {"store": "mooncake", "namespace": "n", "master_address": "127.0.0.1:5", "segment": "",
            "options": {"master_address": "127.0.0.1:5", **options}}


@pytest.mark.parametrize(("options", "address"), [
    ({}, "127.0.0.1"),  # the default: loopback
    ({"local_hostname": "localhost"}, "127.0.0.1"),
    ({"local_hostname": "127.0.0.1:12345"}, "127.0.0.1"),  # Mooncake accepts a port after the host
    ({"local_hostname": "10.0.0.5"}, "10.0.0.5"),  # multi-machine: only the advertised interface
    ({"local_hostname": "10.0.0.5", "listen_host": "0.0.0.0"}, None),  # every interface, when asked
    ({"local_hostname": "10.0.0.5", "listen_host": "::"}, None),
    ({"local_hostname": "203.0.113.9", "listen_host": "10.0.0.5"}, "10.0.0.5"),  # behind NAT
])
def test_listeners_bind_the_advertised_address_unless_listen_host_says_otherwise(options, address):
    assert bind_address(MooncakeStoreOptions(**options)) == address


@pytest.mark.parametrize(("options", "message"), [
    ({"listen_host": "eth0"}, "IPv4 address of this machine"),
    ({"listen_host": "::1"}, "IPv4 address of this machine"),
    ({"listen_host": "127.0.0.1", "local_hostname": "10.0.0.5"}, "other machines could not reach"),
    ({"local_hostname": ""}, "must not be empty"),
])
def test_listen_settings_that_cannot_work_are_refused_when_read(options, message):
    with pytest.raises(ValueError, match=message):
        MooncakeStoreOptions(**options)


def test_an_ipv6_local_hostname_asks_for_an_ipv4_listen_address():
    with pytest.raises(MooncakeError, match="handshake listens on IPv4"):
        bind_address(MooncakeStoreOptions(local_hostname="::1"))


def test_an_attached_client_keeps_the_descriptors_addresses_by_default(monkeypatch):
    monkeypatch.delenv(LOCAL_HOSTNAME_ENV, raising=False)
    monkeypatch.delenv(LISTEN_HOST_ENV, raising=False)
    options = attach_options(descriptor())
    assert (options.local_hostname, bind_address(options)) == ("127.0.0.1", "127.0.0.1")
    assert options.global_segment_size == 0 and options.master_address == "127.0.0.1:5"


def test_a_client_on_another_machine_listens_on_the_address_it_names(monkeypatch):
    monkeypatch.setenv(LOCAL_HOSTNAME_ENV, "10.0.0.7")
    monkeypatch.delenv(LISTEN_HOST_ENV, raising=False)
    options = attach_options(descriptor(local_hostname="10.0.0.5", listen_host="10.0.0.5"))
    assert (options.local_hostname, bind_address(options)) == ("10.0.0.7", "10.0.0.7")


def test_the_listen_host_variable_overrides_the_attached_clients_listen_address(monkeypatch):
    monkeypatch.setenv(LOCAL_HOSTNAME_ENV, "10.0.0.7")
    monkeypatch.setenv(LISTEN_HOST_ENV, "0.0.0.0")
    options = attach_options(descriptor())
    assert (options.local_hostname, bind_address(options)) == ("10.0.0.7", None)
