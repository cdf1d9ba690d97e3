"""Helpers every export shares: the weight name/shape check, file permissions, format choice.

Strategies call ``check_weights`` before writing (a serving engine that ignores unknown names
would load a wrong draft silently) and the SGLang judge calls it on what was written;
``save_safetensors`` writes weights with the permissions any new file gets (safetensors itself
leaves them private), so a serving engine running as another user can read an export.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specforge.errors import UserError


def check_weights(actual: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]], *,
                  optional: Mapping[str, Sequence[int]] | None = None, reader: str = "",
                  expects: str = "expected") -> list[str]:
    """Missing, unexpected and mis-shaped weights (name -> shape), one readable line each.

    ``expected`` names must be present, ``optional`` ones may be; anything else is unexpected.
    ``reader`` names who loads the weights (e.g. "SGLang's DFlashDraftModel") and ``expects`` who
    expects a shape ("SGLang expects") in the messages.
    """
    allowed = {**(optional or {}), **expected}
    loads = f" ({reader} loads it)" if reader else ""
    ignores = f": {reader} would ignore it silently" if reader else ""
    problems = [f"missing weight {name} {list(shape)}{loads}" for name, shape in expected.items()
                if name not in actual]
    problems += [f"unexpected weight {name}{ignores}" for name in actual if name not in allowed]
    problems += [f"weight {name} has shape {list(actual[name])}, {expects} {list(shape)}"
                 for name, shape in allowed.items() if name in actual and tuple(actual[name]) != tuple(shape)]
    return problems


def new_file_mode() -> int:
    """The mode the process's umask gives a new file (0644 under the usual 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_safetensors(tensors: Mapping[str, Any], path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file``, then the usual file permissions (it writes 0600)."""
    from safetensors.torch import save_file

    path = Path(path)
    save_file(dict(tensors), str(path), metadata=dict(metadata) if metadata else None)
    os.chmod(path, new_file_mode())
    return path


def choose_format(strategy: str, formats: Sequence[str], requested: str | None) -> str:
    """``requested`` if the strategy declared it, else its first (default) format."""
    if not requested:
        return formats[0]
    if requested not in formats:
        raise UserError(f"strategy {strategy!r} exports {', '.join(map(repr, formats))}, not {requested!r}; "
                        f"use --format {formats[0]}")
    return requested
