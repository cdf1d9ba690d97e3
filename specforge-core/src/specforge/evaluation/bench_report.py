"""`specforge bench`'s outputs: a Markdown table and a bar chart of the rows (no torch here)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HIDDEN_SETTINGS = ("num_prompts", "check_lossless")  # per group in the table / always on in a bench


def _cells(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [_cells(header), _cells(["---"] * len(header)), *(_cells(r) for r in rows)]


def markdown(rows: Sequence[Any], runs: Sequence[dict[str, Any]], prompt_files: dict[str, str]) -> str:
    """Runs (what was measured, how), then one row per run and prompt group; with several runs, a
    side-by-side table of τ and speed-up per group."""
    lines = ["# specforge bench", "",
             "τ: tokens per target verification (accepted draft tokens + 1). acc@i: share of rounds that "
             "reached draft position i and accepted it. Speed-up: speculative tokens/s over plain greedy "
             "tokens/s through the same engine (the lossless check's pass, prompt by prompt).", ""]
    run_rows = []
    for r in runs:
        s = r["settings"]
        settings = ", ".join(f"{key}={value}" for key, value in s.items() if key not in HIDDEN_SETTINGS)
        run_rows.append([r["run"], f"`{r['path']}` ({r['kind']})", r["strategy"], r["dtype"], settings])
    lines += _table(["run", "path", "strategy", "dtype", "settings"], run_rows)
    lines += ["", *_table(["prompts", "file"], [[name, f"`{src}`"] for name, src in prompt_files.items()]), ""]
    positions = max((len(r.result["per_position_acceptance"]) for r in rows), default=0)
    header = ["prompts", "category", "run", "n", "τ", *(f"acc@{i + 1}" for i in range(positions)),
              "spec tok/s", "greedy tok/s", "speed-up"]
    body = []
    for r in ordered(rows):
        res = r.result
        acc = [f"{a:.2f}" for a in res["per_position_acceptance"]]
        body.append([r.prompts, r.category, r.run, res["num_prompts"], f"{res['tau']:.2f}",
                     *acc, *["–"] * (positions - len(acc)), f"{res['tokens_per_s']:.1f}",
                     f"{res['greedy_tokens_per_s']:.1f}", f"{res['speedup']:.2f}×"])
    lines += _table(header, body)
    labels = list(dict.fromkeys(r.run for r in rows))
    if len(labels) > 1:
        by_key = {(r.prompts, r.category, r.run): r.result for r in rows}
        keys = list(dict.fromkeys((r.prompts, r.category) for r in ordered(rows)))
        side = [[p, c, *(_fmt(by_key.get((p, c, run)), "tau", "{:.2f}") for run in labels),
                 *(_fmt(by_key.get((p, c, run)), "speedup", "{:.2f}×") for run in labels)] for p, c in keys]
        lines += ["", *_table(["prompts", "category", *(f"τ {run}" for run in labels),
                               *(f"speed-up {run}" for run in labels)], side)]
    return "\n".join(lines) + "\n"


def _fmt(result: dict | None, key: str, spec: str) -> str:
    return spec.format(result[key]) if result is not None else "–"


def ordered(rows: Sequence[Any]) -> list[Any]:
    """Grouped by prompt file and category (in first-seen order, ``all`` last), runs side by side."""
    files = list(dict.fromkeys(r.prompts for r in rows))
    cats = list(dict.fromkeys(r.category for r in rows if r.category != "all"))
    runs = list(dict.fromkeys(r.run for r in rows))
    rank = {"all": len(cats)} | {c: i for i, c in enumerate(cats)}
    return sorted(rows, key=lambda r: (files.index(r.prompts), rank[r.category], runs.index(r.run)))


def bar_chart(rows: Sequence[Any], out: Path) -> Path | None:
    """τ and speed-up per prompt group, one bar per run (``report`` extra: matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no %s (pip install specforge-core[report])", out.name)
        return None
    rows = ordered(rows)
    groups = list(dict.fromkeys((r.prompts, r.category) for r in rows))
    runs = list(dict.fromkeys(r.run for r in rows))
    by_key = {(r.prompts, r.category, r.run): r.result for r in rows}
    several = len({p for p, _ in groups}) > 1
    names = [p if c == "-" else f"{p}/{c}" if several else c for p, c in groups]
    width = 0.8 / len(runs)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.2 * len(groups) * 2), 4))
    for ax, key, title in ((axes[0], "tau", "acceptance length τ"), (axes[1], "speedup", "speed-up vs greedy")):
        for j, run in enumerate(runs):
            values = [by_key[(p, c, run)][key] if (p, c, run) in by_key else 0.0 for p, c in groups]
            ax.bar([i + (j - (len(runs) - 1) / 2) * width for i in range(len(groups))], values, width, label=run)
        if key == "speedup":
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(groups)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
