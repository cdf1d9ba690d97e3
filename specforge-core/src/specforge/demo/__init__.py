"""The embedded default: synthetic chats, a small tokenizer and a tiny target, built offline.

``ensure_demo_assets()`` builds them once into the cache and returns their paths;
``demo_target_info()`` describes the target without building anything. Neither imports torch
until a build starts.
"""

from specforge.demo.assets import DemoAssets, demo_target_info, ensure_demo_assets

__all__ = ["DemoAssets", "demo_target_info", "ensure_demo_assets"]
