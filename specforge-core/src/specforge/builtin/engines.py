"""Registrations of the core's own engines, through the same hooks as any plugin.

Nothing is registered before it works. Importing this module imports no torch: the hf engine
module imports torch and transformers only inside its methods.
"""

from __future__ import annotations

from collections.abc import Callable

from specforge.components import TargetEngineSpec
from specforge.engines.hf import HFEngineOptions
from specforge.plugin import hookimpl


@hookimpl
def specforge_register_target_engines(register: Callable[[TargetEngineSpec], None]) -> None:
    register(TargetEngineSpec(
        name="hf",
        summary="Hugging Face transformers, in process (local model directory; CPU or one GPU)",
        factory="specforge.engines.hf:HFEngine",
        options=HFEngineOptions,
    ))
