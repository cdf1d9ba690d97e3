"""Mooncake feature store for SpecForge (store ``mooncake``, verb ``specforge mooncake master``).

Importing this package imports neither torch nor mooncake: the registration and the CLI verb
load them only when a store is built or a master started.
"""

__version__ = "0.1.0"
