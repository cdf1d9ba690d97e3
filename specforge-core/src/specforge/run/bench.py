"""`specforge bench`: τ, per-position acceptance and speed-up per prompt set, for runs side by side.

Each path is opened the way `specforge eval` opens it (``open_for_eval``) and decoded through
the same path (``plan_eval`` builds the settings, ``run_decoding`` decodes and checks lossless),
once per prompt file; a file's prompts are then summarised per ``category`` field, and the
categories of one file add up to its ``all`` row exactly (``Decoded.summary`` of shares).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specforge.errors import UserError
from specforge.run.evaluate import EvalPlan, Opened, eval_dtype, export_prompts, open_for_eval, plan_eval, run_decoding
from specforge.run.folder import Located, locate

log = logging.getLogger(__name__)

ALL = 1 << 30  # load every prompt of a file: the bench limits each category to --num-prompts
NO_CATEGORY = "-"  # the category column of a file whose lines name none
DEMO_PROMPTS = "demo_prompts.jsonl"  # the built-in set, written beside the report


@dataclass(frozen=True)
class BenchRow:
    """One run on one prompt group: ``category`` is a file's category, or ``all`` for its total."""

    run: str
    prompts: str
    category: str
    result: dict[str, Any]  # EvalResult.to_json()


@dataclass(frozen=True)
class BenchReport:
    rows: list[BenchRow]
    runs: list[dict[str, Any]]  # per run: label, strategy, k, dtype, prompt files, settings
    prompt_files: dict[str, str]  # prompts column -> the file measured


def eval_overrides(max_new_tokens: int | None, tree: dict[str, int | None]) -> dict[str, Any]:
    """The ``eval.<key>`` overrides of the command line; the lossless check stays on (it times the
    plain greedy baseline of the speed-up); ``tree``: ``eval.topk`` / ``eval.num_draft_tokens``."""
    overrides: dict[str, Any] = {"check_lossless": True}
    if max_new_tokens:
        overrides["max_new_tokens"] = max_new_tokens
    overrides.update({key: value for key, value in tree.items() if value is not None})
    return overrides


def default_prompts(located: Located, config: Any, out_dir: Path) -> list[str | None]:
    """Without --prompts: the demo's built-in set for a demo run or its export, an export's held-out
    file, else the run's own held-out prompts (None: what `specforge eval` uses)."""
    demo = config.run.demo or bool((located.marker or {}).get("demo"))
    if demo:
        from specforge.demo.bench_prompts import write_bench_prompts

        return [str(write_bench_prompts(out_dir / DEMO_PROMPTS))]
    if located.kind == "export":
        return [export_prompts(located)]
    return [None]


def check_prompt_files(files: Sequence[str]) -> None:
    """Every file exists, and no two share a name (the table's prompts column is the file's stem)."""
    stems: dict[str, str] = {}
    for f in files:
        if not Path(f).is_file():
            raise UserError(f"prompts file {f!r} does not exist; pass --prompts FILE (conversations JSONL, one "
                            f"chat per line, optional \"category\" field)")
        other = stems.setdefault(Path(f).stem, f)
        if other != f:
            raise UserError(f"prompts files {other!r} and {f!r} share the name {Path(f).stem!r}, which the table "
                            f"shows; rename one")


def groups(plan: EvalPlan, per_group: int) -> list[tuple[str, list[int]]]:
    """(category, prompt indices): the first ``per_group`` prompts of each category, in file order."""
    named = any(plan.categories)
    out: dict[str, list[int]] = {}
    for i in range(len(plan.prompts)):
        category = (plan.categories[i] if i < len(plan.categories) else "") or ("(none)" if named else NO_CATEGORY)
        chosen = out.setdefault(category, [])
        if len(chosen) < per_group:
            chosen.append(i)
    return list(out.items())


def subplan(plan: EvalPlan, indices: Sequence[int]) -> EvalPlan:
    """The plan restricted to ``indices`` (its settings as ``plan_eval`` built them)."""
    return dataclasses.replace(
        plan, prompts=[plan.prompts[i] for i in indices], names=[plan.names[i] for i in indices],
        categories=tuple(plan.categories[i] for i in indices) if plan.categories else (),
        settings=dataclasses.replace(plan.settings, num_prompts=len(indices)))


def bench_one(opened: Opened, label: str, files: Sequence[str | None], *, k: int | None,
              num_prompts: int | None) -> tuple[list[BenchRow], dict[str, str], dict[str, Any]]:
    """Decode every prompt file with one run's draft, through one engine."""
    from specforge.run.assemble import build_engine

    config, rebuilt = opened.config, opened.rebuilt
    per_group = num_prompts or config.eval.num_prompts
    rows: list[BenchRow] = []
    sources: dict[str, str] = {}
    settings = None
    engine = build_engine(config, config.target.device, eval_dtype(config))
    try:
        for file in files:
            plan = plan_eval(config, rebuilt.info.tokenizer, prompts=file, k=k, num_prompts=ALL,
                             strategy=rebuilt.strategy)
            name = Path(file).stem if file else "held-out"
            sources[name] = plan.source
            split = groups(plan, per_group)
            chosen = sorted(i for _, indices in split for i in indices)
            where = {i: n for n, i in enumerate(chosen)}
            wanted = subplan(plan, chosen)
            settings = wanted.settings
            decoded = run_decoding(engine, rebuilt.strategy, rebuilt.draft, wanted, phase=f"bench {label} {name}")
            for category, indices in split:
                rows.append(BenchRow(label, name, category, decoded.summary([where[i] for i in indices]).to_json()))
            if len(split) > 1:
                rows.append(BenchRow(label, name, "all", decoded.summary().to_json()))
    finally:
        engine.close()
    assert settings is not None
    info = {"run": label, "path": str(opened.located.path), "kind": opened.located.kind,
            "strategy": config.run.strategy, "dtype": eval_dtype(config),
            "settings": dataclasses.asdict(settings)}
    return rows, sources, info


def bench(paths: Sequence[str], *, prompts: Sequence[str] = (), out_dir: Path, num_prompts: int | None = None,
          max_new_tokens: int | None = None, k: int | None = None,
          tree: dict[str, int | None] | None = None, dtype: str | None = None) -> BenchReport:
    """Bench each path (a run, a checkpoint or an export) on the same prompt files, in order."""
    if not paths:
        raise UserError("specforge bench needs at least one run, checkpoint or export folder")
    check_prompt_files(prompts)
    overrides = eval_overrides(max_new_tokens, tree or {})
    located = [locate(p) for p in paths]  # every path is checked before any target loads
    labels = _labels(paths)
    rows: list[BenchRow] = []
    runs: list[dict[str, Any]] = []
    files_seen: dict[str, str] = {}
    for place, label in zip(located, labels):
        opened = open_for_eval(place, dtype=dtype, **overrides)
        files = list(prompts) or default_prompts(place, opened.config, out_dir)
        log.info("bench %s: %s on %s", label, opened.config.run.strategy, ", ".join(f or "held-out" for f in files))
        run_rows, sources, info = bench_one(opened, label, files, k=k, num_prompts=num_prompts)
        rows += run_rows
        runs.append(info)
        files_seen.update(sources)
    return BenchReport(rows, runs, files_seen)


def _labels(paths: Sequence[str]) -> list[str]:
    """What the table calls each path: its folder name (``runs/a/export`` -> ``a/export``), or the
    path as given when two would share a name."""
    def name(p: str) -> str:
        path = Path(p).resolve()  # runs/last -> the run it points at
        if path.parent.name == "checkpoints":
            return f"{path.parent.parent.name}/{path.name}"
        return f"{path.parent.name}/{path.name}" if path.name == "export" else path.name

    short = [name(p) for p in paths]
    return short if len(set(short)) == len(short) else [str(p) for p in paths]
