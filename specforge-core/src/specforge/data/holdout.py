"""The held-out split (``data.eval_holdout``): which samples evaluation keeps out of training.

Membership is decided by a hash of each sample's id (SHA-256 of ``specforge-holdout`` and the
id), never by position or seed: every rank, producer and process that reads the same corpus
picks the same samples, a reshuffled or resharded corpus keeps them, and a new seed does not
move them. A fraction f holds out exactly the samples whose hash, as a number in [0, 1), is
below f (each sample decides alone); a count k holds out the k samples with the smallest
hashes. Give conversations an ``"id"`` to keep the split fixed when lines move (the default id
is ``<file stem>-<line>``).

Unset (the default), it is ``auto``: nothing when ``data.eval_path`` is given or evaluation is
off (``eval.enabled = false``); otherwise 2% of the samples, at least 1 and at most
``AUTO_MAX`` (the 256 smallest hashes once 2% exceeds that): enough prompts for τ, few enough
that a million-conversation corpus loses nothing it would miss.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

AUTO_FRACTION = 0.02
AUTO_MAX = 256
_SALT = b"specforge-holdout\0"
_SCALE = float(1 << 64)


def holdout_hash(sample_id: str) -> int:
    """The 64-bit number a sample's membership is decided by."""
    return int.from_bytes(hashlib.sha256(_SALT + sample_id.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class Holdout:
    """A resolved ``data.eval_holdout``: ``none``, ``fraction`` (value in (0, 1)), ``count`` or ``auto``."""

    mode: str
    value: float = 0.0
    why: str = ""  # why auto resolved to none

    def count_for(self, num_samples: int) -> int | None:
        """How many samples of ``num_samples`` are held out; None for a fraction (known only per sample)."""
        if self.mode == "none":
            return 0
        if self.mode == "count":
            return min(int(self.value), max(num_samples - 1, 0))
        if self.mode == "auto":
            return auto_count(num_samples)
        return None

    def describe(self) -> str:
        if self.mode == "none":
            return f"none ({self.why})" if self.why else "none"
        if self.mode == "fraction":
            return f"{self.value:g} of the samples (those whose id hash falls below it)"
        if self.mode == "count":
            return f"{int(self.value)} samples (the smallest id hashes)"
        return (f"auto: {AUTO_FRACTION:.0%} of the samples, at least 1, at most {AUTO_MAX} "
                f"(the smallest id hashes)")


def auto_count(num_samples: int) -> int:
    if num_samples < 2:
        return 0
    return max(1, min(AUTO_MAX, round(AUTO_FRACTION * num_samples)))


def resolve_holdout(value: float | None, *, eval_path: str, eval_enabled: bool) -> Holdout:
    """``data.eval_holdout`` as a rule (see the module docstring for ``None``)."""
    if value is None:
        if eval_path:
            return Holdout("none", why="data.eval_path holds the evaluation prompts")
        if not eval_enabled:
            return Holdout("none", why="evaluation is off")
        return Holdout("auto")
    if value == 0:
        return Holdout("none", why="data.eval_holdout = 0")
    if value < 1:
        return Holdout("fraction", value)
    return Holdout("count", float(int(value)))


def held_out_positions(ids: Iterable[str], num_samples: int, holdout: Holdout) -> list[int]:
    """Sorted positions (in ``ids`` order) of the held-out samples."""
    if holdout.mode == "none":
        return []
    if holdout.mode == "fraction":
        limit = holdout.value * _SCALE
        return [i for i, sid in enumerate(ids) if holdout_hash(sid) < limit]
    k = holdout.count_for(num_samples) or 0
    if k == 0:
        return []
    smallest = heapq.nsmallest(k, ((holdout_hash(sid), i) for i, sid in enumerate(ids)))
    return sorted(i for _, i in smallest)
