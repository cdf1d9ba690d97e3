"""``specforge mooncake master``: a master in the foreground, for runs that span machines."""

from __future__ import annotations

import socket

import click


@click.group("mooncake")
def mooncake() -> None:
    """Tools for the Mooncake feature store."""


@mooncake.command("master", context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to listen on: 127.0.0.1 serves this machine only; "
              "this machine's address (or 0.0.0.0, every interface) serves others, and whoever reaches it can "
              "read, overwrite and remove objects (no authentication).")
@click.option("--rpc-port", type=click.IntRange(0, 65535), default=50051, help="Port clients connect to "
              "(0 = a free one).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9003, help="Prometheus /metrics and "
              "/health (0 = a free one).")
@click.option("--lease-ttl", "lease_ttl_ms", type=click.IntRange(min=1), default=10_000, metavar="MS",
              help="How long a read protects an object from removal, in milliseconds.")
def master(host: str, rpc_port: int, metrics_port: int, lease_ttl_ms: int) -> None:
    """Run a Mooncake master until Ctrl-C or SIGTERM; prints the address clients use."""
    from specforge_mooncake.master import MasterProcess

    process = MasterProcess(host=host, rpc_port=rpc_port, metrics_port=metrics_port, lease_ttl_ms=lease_ttl_ms)
    process.start()
    shown = socket.getfqdn() if host in ("0.0.0.0", "") else host
    address = f"{shown}:{process.rpc_port}"
    click.echo(f"mooncake master listening on {process.address} (pid {process.pid}, lease {lease_ttl_ms} ms, "
               f"metrics on port {process.metrics_port})")
    click.echo(f"clients: --store mooncake --set store.master_address={address} "
               f"--set store.local_hostname=<the client's own address>")
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = process.stop()
    if code:
        raise click.ClickException(f"the master exited with code {code}")
