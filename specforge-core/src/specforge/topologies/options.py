"""Options of the built-in topologies (torch-free: registration imports them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OfflineOptions:
    """No options yet: the capture batch size is ``training.capture_batch_size``."""


@dataclass(frozen=True)
class OnlineOptions:
    """No options yet."""
