"""Judge a written ``speculators`` export from its files alone: config.json and the safetensors header."""

from __future__ import annotations

import json
from pathlib import Path

from specforge_peagle import speculators_format as fmt_spec

SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def written_tensors(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype name) of a safetensors file, read from its header."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        slices = {name: f.get_slice(name) for name in f.keys()}  # noqa: SIM118
        return {name: (tuple(s.get_shape()), SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype()))
                for name, s in slices.items()}


def check_export_dir(export_dir: Path) -> list[str]:
    """Every problem vLLM would have loading this directory as a P-EAGLE speculator (empty: none)."""
    from specforge_peagle.export import CONFIG_FILE, WEIGHTS_FILE, weight_problems

    config_path, weights_path = export_dir / CONFIG_FILE, export_dir / WEIGHTS_FILE
    missing = [str(p) for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        return [f"{p} is missing" for p in missing]
    config = json.loads(config_path.read_text())
    problems = fmt_spec.config_problems(config)
    if problems:
        return problems
    return weight_problems(written_tensors(weights_path), config)
