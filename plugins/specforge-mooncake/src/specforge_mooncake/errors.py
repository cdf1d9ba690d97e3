"""Errors of the Mooncake store, each naming the fix, and the names of Mooncake's return codes."""

from __future__ import annotations

from specforge.api import SpecforgeError

ERROR_CODES: dict[int, str] = {
    -1: "INTERNAL_ERROR",
    -200: "NO_AVAILABLE_HANDLE (no free segment memory)",
    -400: "INVALID_KEY",
    -600: "INVALID_PARAMS",
    -703: "REPLICA_IS_NOT_READY",
    -704: "OBJECT_NOT_FOUND",
    -705: "OBJECT_ALREADY_EXISTS",
    -706: "OBJECT_HAS_LEASE",
    -707: "LEASE_EXPIRED",
    -900: "RPC_FAIL",
}
"""Mooncake's negative return codes that this store meets (Mooncake's types.h has the full list)."""

OBJECT_NOT_FOUND = -704
OBJECT_HAS_LEASE = -706
INVALID_PARAMS = -600
NO_AVAILABLE_HANDLE = -200


def code_name(code: int) -> str:
    return f"{code} {ERROR_CODES.get(code, 'unknown error')}"


class MooncakeError(SpecforgeError):
    """Something about Mooncake went wrong; the message says what to do."""


class MooncakeUnavailableError(MooncakeError):
    """The ``mooncake`` package or a system library it needs is missing."""


class MooncakeMasterError(MooncakeError):
    """A master could not be started or reached."""


class MooncakeExposedError(MooncakeError):
    """A Mooncake listener bound an address it was not asked to; the store or master refused to run."""


class MooncakeStoreError(MooncakeError):
    """A store operation failed with a Mooncake error code."""
