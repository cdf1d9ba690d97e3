"""Turning what SGLang sent back into one [S, W] tensor per sample: JSON float lists or shm files.

A row holds the captured layers then the final post-norm hidden state (``CapturePlan``).
JSON costs ~20 bytes per float and a Python float object each; the shm files are the raw
bytes the capture class wrote, read straight into a tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.api import SpecforgeError
from specforge_sglang.capture_plan import CAPTURE_PACKAGE, error_path, rows_path

NOT_LOADED_HINT = (
    f"SGLang did not run the SpecForge capture class ({CAPTURE_PACKAGE}); SGLang skips an external "
    f"model module that fails to import with only a warning ('Ignore import error when loading "
    f"{CAPTURE_PACKAGE}...' in its log). Check that specforge-sglang is installed where SGLang runs "
    f"and that the server was started with `python -m specforge_sglang.serve`"
)


class CaptureTransportError(SpecforgeError):
    """Features did not come back from SGLang in the expected form."""


def rows_from_json(hidden_states: Any, *, rid: str, num_tokens: int, width: int, dtype: Any) -> Any:
    """The prefill rows of SGLang's ``meta_info["hidden_states"]`` as a [S, W] tensor."""
    import torch

    if not hidden_states:
        raise CaptureTransportError(f"request {rid}: SGLang returned no hidden states; the server must run "
                                    f"with --enable-return-hidden-states (`python -m specforge_sglang.serve` adds it)")
    prefill = hidden_states[0]  # one list of rows for the prompt, then one row per decoded token
    rows = torch.tensor(prefill, dtype=torch.float32)  # [S, W]
    if rows.dim() != 2 or rows.shape[0] != num_tokens:
        raise CaptureTransportError(
            f"request {rid}: SGLang returned hidden states of shape {tuple(rows.shape)} for a prompt of "
            f"{num_tokens} tokens; is the prefix cache on (needs --disable-radix-cache) or prefill chunked "
            f"(needs --chunked-prefill-size -1)?")
    if rows.shape[1] != width:
        raise CaptureTransportError(f"request {rid}: rows are {rows.shape[1]} wide, expected {width}. "
                                    f"{NOT_LOADED_HINT}; or the server captures other layers than "
                                    f"target_engine.capture_layers")
    return rows.to(dtype)


def read_rows(shm_dir: str | Path, rid: str, *, num_tokens: int, width: int, dtype: Any) -> Any:
    """The [S, W] rows the capture class wrote for ``rid``; the files are removed once read."""
    import torch

    path, err = rows_path(shm_dir, rid), error_path(shm_dir, rid)
    try:
        if err.exists():
            raise CaptureTransportError(f"request {rid}: the capture class reported: {err.read_text().strip()}")
        if not path.exists():
            raise CaptureTransportError(f"request {rid}: no feature file {path}. {NOT_LOADED_HINT}; with a "
                                        f"server, start it with --shm-dir {shm_dir}")
        itemsize = torch.empty((), dtype=dtype).element_size()
        expected = num_tokens * width * itemsize
        size = path.stat().st_size
        if size != expected:
            raise CaptureTransportError(
                f"request {rid}: {path} holds {size} bytes, expected {expected} ({num_tokens} tokens x {width} "
                f"x {itemsize}); is prefill chunked (needs --chunked-prefill-size -1), the dtype other than "
                f"the target's, or the server capturing other layers than target_engine.capture_layers?")
        rows = torch.from_file(str(path), shared=False, size=num_tokens * width, dtype=dtype)
        return rows.view(num_tokens, width)  # [S, W]
    finally:
        path.unlink(missing_ok=True)
        err.unlink(missing_ok=True)
