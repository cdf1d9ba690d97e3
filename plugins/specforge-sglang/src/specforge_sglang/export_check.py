"""Judge a ``--format sglang`` export: are its weights exactly what SGLang's draft class loads?

SGLang's draft loaders skip unknown weight names silently and leave missing ones at their
initial values, so a misnamed export serves garbage without an error. This check compares the
export's safetensors (read from the header, no torch) with ``draft_weights``; when SGLang is
importable it also builds SGLang's own draft class in a subprocess and loads the export into
it (``sglang_probe``), so the verdict comes from SGLang's code.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from specforge.api.export import check_weights
from specforge_sglang.draft_weights import (
    ARCHITECTURE_OF_STRATEGY,
    EXPECTED_BY_ARCHITECTURE,
    DraftWeights,
)
from specforge_sglang.versions import installed_sglang_version

log = logging.getLogger(__name__)

SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
PROBE_ENV = "SPECFORGE_SGLANG_EXPORT_PROBE"
"""Set to 0 to skip the SGLang-code probe even when SGLang is importable."""
PROBE_TIMEOUT_S = 600


def read_safetensors_header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype name) from a safetensors file's JSON header."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100_000_000:
            raise ValueError(f"{path} is not a safetensors file (header of {length} bytes)")
        header = json.loads(f.read(length))
    return {name: (tuple(meta["shape"]), SAFETENSORS_DTYPES.get(meta["dtype"], meta["dtype"]))
            for name, meta in header.items() if name != "__metadata__"}


def export_tensors(export_dir: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor of a single-file or index-sharded safetensors export."""
    single = export_dir / "model.safetensors"
    index = export_dir / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors_header(single)
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, tuple[tuple[int, ...], str]] = {}
        for name in files:
            tensors.update(read_safetensors_header(export_dir / name))
        return tensors
    raise FileNotFoundError(f"{export_dir} has neither model.safetensors nor model.safetensors.index.json")


def compare(expected: DraftWeights, tensors: dict[str, tuple[tuple[int, ...], str]]) -> list[str]:
    """Missing, unexpected, mis-shaped and mis-typed tensors, plus the config's own problems."""
    problems = list(expected.config_problems)
    optional = {n: s for n, s in expected.allowed().items() if n not in expected.required}
    problems += check_weights({n: shape for n, (shape, _) in tensors.items()}, expected.required,
                              optional=optional, reader=f"SGLang's {expected.architecture}",
                              expects="SGLang expects")
    for name, dtype in expected.dtypes.items():
        if name in tensors and tensors[name][1] != dtype:
            problems.append(f"weight {name} has dtype {tensors[name][1]}, SGLang expects {dtype}")
    return problems


def probe_problems(export_dir: Path, expected: DraftWeights) -> list[str]:
    """Load the export into SGLang's own draft class (in a subprocess) and report what it ignored or missed."""
    env = {**os.environ, "SGLANG_USE_CPU_ENGINE": os.environ.get("SGLANG_USE_CPU_ENGINE", "1")}
    cmd = [sys.executable, "-m", "specforge_sglang.sglang_probe", str(export_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        return [f"SGLang probe timed out after {PROBE_TIMEOUT_S}s (set {PROBE_ENV}=0 to skip it)"]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return ["SGLang probe failed: " + " | ".join(tail) + f" (set {PROBE_ENV}=0 to skip it)"]
    result = json.loads(lines[-1])
    return result_problems(result, expected)


def result_problems(result: dict[str, Any], expected: DraftWeights) -> list[str]:
    """Problems in a probe result: SGLang errors, names it ignored (beyond the known-unused), params left empty."""
    if result.get("error"):
        return [f"SGLang cannot build or load this draft: {result['error']}"]
    ignored = [n for n in result.get("ignored", []) if n not in expected.accepted_unused]
    problems = [f"SGLang's {expected.architecture} ignores weight {n}" for n in ignored]
    problems += [f"SGLang's {expected.architecture} parameter {p} gets no weight from this export"
                 for p in result.get("uncovered", [])]
    return problems


def check_export_dir(export_dir: Path, *, strategy: str, probe: bool | None = None) -> list[str]:
    """Every problem SGLang would have loading ``export_dir`` as a draft; empty when it loads exactly."""
    config_path = export_dir / "config.json"
    if not config_path.is_file():
        return [f"{config_path} is missing; SGLang reads the draft's config.json"]
    config = json.loads(config_path.read_text())
    arches = list(config.get("architectures") or [])
    arch = next((a for a in arches if a in EXPECTED_BY_ARCHITECTURE), None)
    wanted = ARCHITECTURE_OF_STRATEGY.get(strategy)
    if arch is None:
        if wanted is not None:
            return [f"config.json architectures {arches} lack {wanted}, the SGLang draft class for {strategy}"]
        log.warning("specforge-sglang cannot judge a %s draft with architectures %s (it knows %s)", strategy,
                    arches, ", ".join(EXPECTED_BY_ARCHITECTURE))
        return []
    if wanted is not None and arch != wanted:
        return [f"a {strategy} export must target {wanted}, config.json says {arch}"]
    expected = EXPECTED_BY_ARCHITECTURE[arch](config)
    try:
        tensors = export_tensors(export_dir)
    except (OSError, ValueError, KeyError) as exc:
        return [f"cannot read the export's weights: {exc}"]
    problems = compare(expected, tensors)
    if probe is None:
        probe = os.environ.get(PROBE_ENV, "1") != "0" and installed_sglang_version() is not None
    if probe and not problems:
        problems = probe_problems(export_dir, expected)
    return problems
