"""The core's own components, each a plugin module loaded before entry points."""
