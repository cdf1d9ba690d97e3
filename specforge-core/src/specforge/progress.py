"""Progress of a long phase (capture, training, evaluation), on a terminal or in a log file.

On a terminal it is a tqdm bar. Otherwise (a CI log, ``nohup``, a pipe) it is log lines: one
when the phase starts, one at every further 10 % or after 15 s without a line, and one when it
ends, each with the elapsed time and an estimate of the time left, so a log never goes quiet
for long without saying how far a run is::

    capture: 0/4200 samples
    capture: 420/4200 samples (10%), 15 s elapsed, about 2 min 15 s left
    capture: done, 4200 samples in 2 min 31 s
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

LOG_EVERY_PARTS = 10  # a line at every tenth of the work
LOG_EVERY_SECONDS = 15.0


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 07 s``, ``1 h 02 min``: what a person reads at a glance."""
    whole = round(max(0.0, seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class PhaseProgress:
    """``update(n)`` as work is done, ``close()`` at the end; ``details`` add e.g. the loss.

    ``initial`` is work already done before this process started (a resumed run): it counts
    toward the position, not toward the rate the estimate is made from.
    """

    def __init__(self, phase: str, total: int, unit: str, *, log: logging.Logger, initial: int = 0,
                 enabled: bool = True, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.phase, self.total, self.unit, self._log = phase, total, unit, log
        self.done = self._start_done = initial
        self._enabled = enabled and total > 0
        self._clock = clock
        self._started = self._last_line = clock()
        self._next_part = initial * LOG_EVERY_PARTS // total + 1 if total else 1  # integers: no rounding
        self._bar = None
        if not self._enabled:
            return
        if terminal if terminal is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=phase, unit=unit, dynamic_ncols=True)
        else:
            self._log.info("%s: %d/%d %s", phase, initial, total, unit)

    def update(self, n: int = 1, **details: Any) -> None:
        self.done += n
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            if details:
                self._bar.set_postfix(**details)
            return
        now = self._clock()
        part = self.done * LOG_EVERY_PARTS // self.total
        if self.done < self.total and (part >= self._next_part or now - self._last_line >= LOG_EVERY_SECONDS):
            self._line(now, details)
            self._next_part = max(self._next_part, part + 1)

    def _line(self, now: float, details: dict[str, Any]) -> None:
        self._last_line = now
        elapsed = now - self._started
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        left = f", about {format_seconds((self.total - self.done) / rate)} left" if rate > 0 else ""
        extra = "".join(f" {k} {v}" for k, v in details.items())
        self._log.info("%s: %d/%d %s (%d%%), %s elapsed%s%s", self.phase, self.done, self.total, self.unit,
                       int(100 * self.done / self.total), format_seconds(elapsed), left, extra)

    def close(self) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        self._log.info("%s: done, %d %s in %s", self.phase, self.done, self.unit,
                       format_seconds(self._clock() - self._started))
        self._enabled = False
