"""Test helpers for plugin authors: a pytest plugin and conformance kits for each component kind.

Importing this package imports no torch; the kits import it when they run.
"""
