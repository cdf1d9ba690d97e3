"""For exports: the shared weight name/shape check, file permissions, the export format choice."""

from __future__ import annotations

from specforge.export import check_weights, choose_format, new_file_mode, save_safetensors

__all__ = ["check_weights", "choose_format", "new_file_mode", "save_safetensors"]
