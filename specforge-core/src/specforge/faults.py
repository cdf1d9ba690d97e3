"""Named kill points for deterministic fault tests: ``SPECFORGE_TEST_KILL_AT=step:3``.

A process reaching the named point sends SIGKILL to itself, exactly there, so a test can show
that what was written before survives and nothing half-written is picked up. A ``@rank1``
suffix limits the kill to one rank. Unset in normal runs: a dictionary lookup, nothing more.
"""

from __future__ import annotations

import os
import signal

ENV = "SPECFORGE_TEST_KILL_AT"


def kill_point(name: str, rank: int = 0) -> None:
    """Die here if the environment names this point (optionally for this rank only)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, only_rank = wanted.partition("@rank")
    if point == name and (not only_rank or int(only_rank) == rank):
        os.kill(os.getpid(), signal.SIGKILL)
