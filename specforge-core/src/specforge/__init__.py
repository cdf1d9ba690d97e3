"""SpecForge: train speculative-decoding draft models; a small core and installable plugins."""

__version__ = "0.1.0"
