"""Exceptions whose message a user can act on; the CLI prints them without a traceback."""

from __future__ import annotations


class SpecforgeError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(SpecforgeError):
    """A run configuration that cannot work."""


class PluginError(SpecforgeError):
    """A plugin is missing, broken, duplicated, or failed inside a hook."""
