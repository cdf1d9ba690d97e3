"""What a run can check with files alone, before anything loads: `run --plan` and every run do it.

Torch-free: data and prompt files exist and are files, the target directory has its weights and
tokenizer, ``max_length`` fits the target's positions, the strategy accepts the target
(``PlanningStrategy.plan_notes``: e.g. a mask token it can draft with), a read-only store exists,
``run.tensorboard`` has its package.
Every problem found is reported at once, each naming the key or flag that fixes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specforge.config import RunConfig
from specforge.contracts import PlanningStrategy, TargetInfo
from specforge.errors import ConfigError, SpecforgeError


def _file_problem(path: str, what: str, flag: str) -> str | None:
    p = Path(path).expanduser()
    if not p.exists():
        return f"{what} {path!r} does not exist; pass an existing file with {flag}"
    if p.is_dir():
        return f"{what} {path!r} is a directory; pass a conversations JSONL file with {flag}"
    return None


def _target_problems(config: RunConfig) -> list[str]:
    from specforge.engines.weights import frozen_weight_names

    if not config.target.model:
        return []  # the embedded demo target, built on first use
    model_dir = Path(config.target.model).expanduser()
    out = []
    try:
        frozen_weight_names(model_dir)
    except SpecforgeError as exc:
        out.append(str(exc))
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        out.append(f"target model directory {str(model_dir)!r} has no tokenizer (tokenizer.json or "
                   f"tokenizer_config.json); copy the model's tokenizer files next to its config.json")
    return out


def _tensorboard_problem(config: RunConfig) -> str | None:
    """``run.tensorboard`` without the package would fail at the first step; say so before anything loads."""
    if not config.run.tensorboard:
        return None
    try:
        import tensorboard  # noqa: F401  (light: the writer itself loads with torch, once the run starts)
    except ImportError:
        return ("run.tensorboard is on but the tensorboard package is not installed: "
                "pip install specforge-core[tensorboard], or turn run.tensorboard off")
    return None


def check(config: RunConfig, info: TargetInfo, strategy: Any) -> list[str]:
    """Raise one ConfigError listing every problem; return the strategy's notes for the plan."""
    problems = []
    data = config.data
    for path, what, flag in ((data.path, "data file", "--data"), (data.eval_path, "held-out prompts file",
                                                                   "--set data.eval_path=FILE")):
        if path:
            problem = _file_problem(path, what, flag)
            if problem:
                problems.append(problem)
    if data.chat_template and not Path(data.chat_template).expanduser().is_file():
        problems.append(f"chat template file {data.chat_template!r} does not exist; fix data.chat_template")
    problems += _target_problems(config)
    tensorboard = _tensorboard_problem(config)
    if tensorboard:
        problems.append(tensorboard)
    if info.max_position_embeddings and data.max_length > info.max_position_embeddings:
        problems.append(f"data.max_length {data.max_length} exceeds the target's max_position_embeddings "
                        f"{info.max_position_embeddings}; lower it with --set data.max_length=N")
    notes: list[str] = []
    if isinstance(strategy, PlanningStrategy):
        try:
            notes = list(strategy.plan_notes(info))
        except SpecforgeError as exc:
            problems.append(str(exc))
    store = config.components["store"].options
    root = getattr(store, "root", "")
    marker = Path(root).expanduser() / "features" / "store.json" if root else None
    if getattr(store, "read_only", False) and marker is not None and not marker.is_file():
        problems.append(f"store.read_only is set but {root} holds no disk store; capture into it first "
                        f"(specforge capture --output-dir {root}) or drop store.read_only")
    if problems:
        raise ConfigError("; ".join(problems) if len(problems) == 1 else
                          f"{len(problems)} problems: " + "; ".join(problems))
    return notes
