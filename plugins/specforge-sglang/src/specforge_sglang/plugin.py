"""The ``specforge`` entry point of specforge-sglang: registration only (no torch, no SGLang import)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from specforge.plugin import TargetEngineSpec, hookimpl
from specforge_sglang.options import SGLangEngineOptions


@hookimpl
def specforge_register_target_engines(register: Callable[[TargetEngineSpec], None]) -> None:
    register(TargetEngineSpec(
        name="sglang",
        summary="SGLang, in process or a server URL; features through a capture class, binary via shared memory",
        factory="specforge_sglang.engine:SGLangEngine",
        options=SGLangEngineOptions,
    ))


@hookimpl
def specforge_check_export(strategy: str, fmt: str, export_dir: Path, info: dict) -> list[str] | None:
    """Weight names and shapes SGLang's EAGLE3 / DFlash draft classes load: all present, nothing else."""
    if fmt != "sglang":
        return None
    from specforge_sglang.export_check import check_export_dir

    return check_export_dir(Path(export_dir), strategy=strategy)
