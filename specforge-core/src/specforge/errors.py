"""Exceptions whose message a user can act on; the CLI prints them as one line (exit code 2).

``UserError`` is the type plugins raise for bad input (an option, a data file, a layer id, a
resume that cannot continue, an export format): the message names the problem and the fix.
The core's own families (``ConfigError``, ``DataError``, ``PluginError``, ...) derive from the
same base, so every one of them reaches the user the same way; ``specforge -v`` adds the
traceback.
"""

from __future__ import annotations


class SpecforgeError(Exception):
    """A problem the user can fix; the message says how."""


class UserError(SpecforgeError, ValueError):
    """Bad user input, raised by the core or a plugin: one line naming the problem and the fix.

    Also a ``ValueError`` (it is a bad value), so code that validated with ValueError before
    keeps catching it.
    """


class ConfigError(UserError):
    """A run configuration that cannot work."""


class PluginError(SpecforgeError):
    """A plugin is missing, broken, duplicated, or failed inside a hook."""
