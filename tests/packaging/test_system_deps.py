"""`make demo`/`make test` bring in the system library Mooncake needs, or say exactly how to.

The script runs with stand-ins for ``ldconfig``, ``apt-get``, ``id`` and ``sudo`` first on PATH, so
each situation a fresh machine can be in is reproduced without touching this machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"


def stand_ins(tmp_path: Path, *, has_lib: bool, uid: int, sudo_ok: bool | None) -> tuple[dict, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    lib = "\tlibibverbs.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libibverbs.so.1" if has_lib else ""
    tools = {
        "ldconfig": f'echo "{lib}"',
        "apt-get": f'echo "apt-get $*" >> {log}',
        "id": f'[ "$1" = "-u" ] && echo {uid}',
    }
    if sudo_ok is not None:
        code = 0 if sudo_ok else 1
        tools["sudo"] = f'[ "$1" = "-n" ] && [ "$2" = "true" ] && exit {code}; echo "sudo $*" >> {log}; "$@"'
    for name, body in tools.items():
        path = bin_dir / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return env, log


def run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_nothing_missing_is_silent_and_installs_nothing(tmp_path: Path) -> None:
    env, log = stand_ins(tmp_path, has_lib=True, uid=1000, sudo_ok=None)
    done = run(env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not log.exists()


def test_as_root_the_missing_library_is_installed_with_one_line_saying_so(tmp_path: Path) -> None:
    env, log = stand_ins(tmp_path, has_lib=False, uid=0, sudo_ok=None)
    done = run(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "installing libibverbs1 with apt-get: libibverbs.so.1 (Mooncake's native library loads it, even for TCP)"]
    assert "apt-get install -y -qq libibverbs1" in log.read_text()


def test_with_passwordless_sudo_it_installs_through_sudo(tmp_path: Path) -> None:
    env, log = stand_ins(tmp_path, has_lib=False, uid=1000, sudo_ok=True)
    done = run(env)
    assert done.returncode == 0, done.stderr
    assert "sudo apt-get install -y -qq libibverbs1" in log.read_text()


@pytest.mark.parametrize("sudo_ok", [False, None])
def test_without_root_or_sudo_it_stops_with_the_exact_command(tmp_path: Path, sudo_ok: bool | None) -> None:
    env, log = stand_ins(tmp_path, has_lib=False, uid=1000, sudo_ok=sudo_ok)
    done = run(env)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: missing libibverbs.so.1 (Mooncake's native library loads it, even for "
                                   "TCP); run: sudo apt-get update && sudo apt-get install -y libibverbs1")
    assert not log.exists()
