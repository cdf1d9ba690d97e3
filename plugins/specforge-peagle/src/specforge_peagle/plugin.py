"""The ``specforge`` entry point of specforge-peagle: registration and the export check, no torch import."""

from __future__ import annotations

from pathlib import Path

from specforge.plugin import StrategySpec, hookimpl
from specforge_peagle.options import PeagleOptions


@hookimpl
def specforge_register_strategies(register) -> None:
    register(StrategySpec(
        name="peagle",
        summary="P-EAGLE: EAGLE3-style multi-layer draft that proposes k tokens in one forward "
                "(mask token + learned mask hidden), trained on COD-sampled depths, served by vLLM",
        factory="specforge_peagle.strategy:PeagleStrategy",
        options=PeagleOptions,
        export_formats=("speculators",),  # the checkpoint vLLM's speculators loader serves
        # The demo's answers are short: fewer depths and draft layers than the Qwen3-8B recipe.
        demo={"strategy": {"num_depths": 4, "num_draft_layers": 2}, "eval": {"k": 4}, "training": {"lr": 1e-3}},
    ))


@hookimpl
def specforge_check_export(strategy: str, fmt: str, export_dir: Path, info: dict) -> list[str] | None:
    """A written ``speculators`` export holds exactly the names, shapes and dtypes vLLM loads."""
    if strategy != "peagle" or fmt != "speculators":
        return None
    from specforge_peagle.export_check import check_export_dir

    return check_export_dir(Path(export_dir))
