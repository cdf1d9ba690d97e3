"""For plugins that start listeners: bind exactly one address, and check what a process listens on."""

from __future__ import annotations

from specforge.net import Socket, bound_socket, describe, held_by, is_loopback

__all__ = ["Socket", "bound_socket", "describe", "held_by", "is_loopback"]
