"""Errors raised while reading and tokenizing conversation data."""

from __future__ import annotations

from specforge.errors import UserError


class DataError(UserError):
    """A data file, line or chat template that cannot be turned into training samples.

    The message names the file and line (``chats.jsonl:17: ...``) when one is to blame.
    """
