"""Start and stop a ``mooncake_master`` process, and never leave one behind.

A master started here is stopped by ``stop()``, by leaving its ``with`` block, at interpreter
exit (``atexit``: normal exit, an uncaught exception, Ctrl-C), on SIGTERM/SIGHUP to this
process (a handler stops the masters, then lets the signal do what it did before), and by the
kernel when this process dies any other way (``PR_SET_PDEATHSIG``, Linux). It runs in its own
session, so a Ctrl-C in the terminal reaches this process, which closes its clients first.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from specforge.api.net import describe
from specforge_mooncake.errors import MooncakeExposedError, MooncakeMasterError
from specforge_mooncake.listeners import ipv4_of, listeners_of, stray
from specforge_mooncake.native import master_binary, unavailable

log = logging.getLogger(__name__)

_RUNNING: dict[int, MasterProcess] = {}  # pid -> master started by this process and not yet stopped
_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _forget_in_child() -> None:
    """A forked child (a fork-start worker pool) owns none of its parent's masters: it inherits this
    table, the signal handlers and the atexit hook, and its exit or a SIGTERM to it (``Pool.terminate``)
    would otherwise stop them under the parent."""
    _RUNNING.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the master binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


_EXEC_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 15, 0, 0, 0)\n"  # PR_SET_PDEATHSIG = SIGTERM; survives the exec below
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"  # the parent died before prctl
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
"""Run as ``python -S -c`` in front of the master: the kernel stops the master when we die, and
the exec keeps the PID, so the PID we hold is the master's (no preexec_fn, which is unsafe with threads)."""


class MasterProcess:
    """One ``mooncake_master`` on ``host``; ports 0 mean "pick free ones"."""

    def __init__(self, host: str = "127.0.0.1", rpc_port: int = 0, metrics_port: int = 0,
                 lease_ttl_ms: int = 10_000, log_path: Path | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.host = host
        self.rpc_port = rpc_port
        self.metrics_port = metrics_port
        self.lease_ttl_ms = lease_ttl_ms
        self.log_path = log_path  # None: the master writes to this process's stdout/stderr
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ facts

    @property
    def address(self) -> str:
        """What clients pass as ``master_address``."""
        return f"{self.host}:{self.rpc_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [str(master_binary()), f"-rpc_address={self.host}", f"-rpc_port={self.rpc_port}",
                f"-metrics_host={self.host}", f"-metrics_port={self.metrics_port}",
                f"-default_kv_lease_ttl={self.lease_ttl_ms}", *self.extra_args]

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_s: float = 30.0) -> MasterProcess:
        """Start the master and return once its RPC port answers; MooncakeMasterError otherwise."""
        if self._proc is not None:
            raise MooncakeMasterError(f"master {self.address} was already started (pid {self.pid})")
        pick = self.rpc_port == 0 or self.metrics_port == 0
        tries = 3 if pick else 1  # a picked port can be taken before the master binds it
        wanted = (self.rpc_port, self.metrics_port)
        while True:
            any_host = "" if self.host == "0.0.0.0" else self.host
            self.rpc_port = wanted[0] or free_port(any_host)
            self.metrics_port = wanted[1] or free_port(any_host)
            try:
                self._launch(timeout_s)
                return self
            except MooncakeMasterError:
                self._proc = None
                self.rpc_port, self.metrics_port = wanted
                tries -= 1
                if not tries:
                    raise

    def _launch(self, timeout_s: float) -> None:
        _install_handlers()
        # PR_SET_PDEATHSIG follows the forking *thread*: from a worker thread it would stop the
        # master when that thread ends, so only the main thread asks for it.
        on_main = threading.current_thread() is threading.main_thread()
        out: Any = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it; closed below
        command = self.command()
        if on_main:
            command = [sys.executable, "-S", "-c", _EXEC_WITH_PARENT, str(os.getpid()), *command]
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT if out else None, start_new_session=True)
        except OSError as exc:
            raise unavailable(exc, "mooncake_master") from exc
        finally:
            if out is not None:
                out.close()
        self._proc = proc
        with _LOCK:
            _RUNNING[proc.pid] = self
        deadline = time.monotonic() + timeout_s
        probe = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        while not port_open(probe, self.rpc_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self._log_tail()
                if "libibverbs" in tail or "libnl" in tail:
                    raise unavailable(OSError(tail.strip().splitlines()[-1]), "mooncake_master")
                why = (f"exited with code {proc.returncode}" if proc.returncode is not None
                       else f"did not open port {self.rpc_port} within {timeout_s:.0f} s")
                raise MooncakeMasterError(f"mooncake_master on {self.address} {why}; is the port in use? "
                                          f"Its log{f' ({self.log_path})' if self.log_path else ''}:\n{tail}")
            time.sleep(0.05)
        wrong = stray(listeners_of([proc.pid]).values(), ipv4_of(self.host))
        if wrong:
            self.stop()
            raise MooncakeExposedError(f"mooncake_master listened on {describe(wrong)}, not only on {self.host}; "
                                       f"stopped it (this Mooncake build has a listener that -rpc_address and "
                                       f"-metrics_host do not move)")
        log.info("mooncake master %s started (pid %d, lease %d ms)", self.address, proc.pid, self.lease_ttl_ms)

    def wait(self) -> int:
        """Block until the master exits; its exit code."""
        if self._proc is None:
            raise MooncakeMasterError("the master was never started")
        return self._proc.wait()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code (None if never started). Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("mooncake master pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, timeout_s)
                proc.kill()
                proc.wait()
        with _LOCK:
            _RUNNING.pop(proc.pid, None)
        return proc.returncode

    def _log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(the master wrote to this process's output)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> MasterProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- process-wide cleanup


def stop_all() -> None:
    """Stop every master this process started and has not stopped yet."""
    with _LOCK:
        masters = list(_RUNNING.values())
    for master in masters:
        master.stop(timeout_s=5.0)


atexit.register(stop_all)  # before any store's hook (store.py imports this module), so it runs after them


def _kill_now(timeout_s: float = 5.0) -> None:
    """Stop every master from a signal handler: raw syscalls only, because the signal may have
    interrupted a ``Popen.wait`` on the same process, whose lock a second ``wait`` would deadlock on."""
    with _LOCK:
        pids = list(_RUNNING)
        _RUNNING.clear()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                break
            if done:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.02)


def _on_signal(signum: int, frame: Any, previous: Any) -> None:
    _kill_now()
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # SIG_DFL, or None (a handler installed outside Python): die of the same signal
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """Signal handlers, once, and only from the main thread (Python allows no other)."""
    global _HANDLERS_INSTALLED
    with _LOCK:
        if _HANDLERS_INSTALLED:
            return
        _HANDLERS_INSTALLED = True
    if threading.current_thread() is not threading.main_thread():
        log.debug("mooncake master started off the main thread: no signal handlers (atexit and "
                  "PR_SET_PDEATHSIG still stop it)")
        return
    for signum in _STOP_SIGNALS:
        previous = signal.getsignal(signum)
        signal.signal(signum, lambda s, f, p=previous: _on_signal(s, f, p))
