"""Finding Mooncake: its Python client and its master binary, with errors that name the install step."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path
from typing import Any

from specforge_mooncake.errors import MooncakeUnavailableError

PIP_HINT = "pip install mooncake-transfer-engine-non-cuda"
APT_HINT = "apt-get install libibverbs1"
SYSTEM_LIBRARIES = ("libibverbs", "libnl-3", "libnl-route-3")
"""Shared libraries Mooncake's native code links even for TCP (Debian's libibverbs1 pulls the others)."""


def _import(name: str) -> Any:
    return importlib.import_module(name)


def unavailable(exc: BaseException, what: str) -> MooncakeUnavailableError:
    """The error for a failed import or start of ``what``, naming the missing piece and its fix."""
    text = str(exc)
    if any(lib in text for lib in SYSTEM_LIBRARIES):
        return MooncakeUnavailableError(
            f"{what} cannot load a system library Mooncake needs even for TCP ({text.strip()}); "
            f"install it: {APT_HINT} (it brings libnl-3-200 and libnl-route-3-200)")
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "mooncake":
        return MooncakeUnavailableError(
            f"the 'mooncake' package is not installed ({text}); install it: {PIP_HINT} "
            f"(environments with another mooncake-* wheel already have it)")
    return MooncakeUnavailableError(f"{what} failed to load ({type(exc).__name__}: {text}); reinstall it "
                                    f"({PIP_HINT}) and check that {APT_HINT} is done")


def mooncake_store() -> Any:
    """The ``mooncake.store`` module (``MooncakeDistributedStore``, ``ReplicateConfig``)."""
    try:
        return _import("mooncake.store")
    except (ImportError, OSError) as exc:
        raise unavailable(exc, "mooncake.store") from exc


def master_binary() -> Path:
    """The native ``mooncake_master`` the wheel ships (run directly, so its PID is the master's)."""
    try:
        spec = importlib.util.find_spec("mooncake")  # the package only: loads no native code
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "mooncake_master"
        if candidate.is_file():
            return candidate
    script = shutil.which("mooncake_master")  # a console script that execs the same binary
    if script:
        return Path(script)
    raise MooncakeUnavailableError(f"no mooncake_master binary found (the 'mooncake' package is missing); "
                                   f"install it: {PIP_HINT}")
