"""`specforge bench PATH...`: τ, per-position acceptance and speed-up per prompt set, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("bench")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--prompts", "prompt_files", multiple=True, type=click.Path(),
              help="Conversations JSONL, one chat per line with an optional \"category\"; repeatable.  [default: "
                   "the built-in demo set for a demo run, else the run's held-out prompts]")
@click.option("--num-prompts", type=click.IntRange(min=1),
              help="Prompts per category (per file when its lines name none).  [default: the run's eval.num_prompts]")
@click.option("--max-new-tokens", type=click.IntRange(min=1),
              help="Tokens generated per prompt.  [default: the run's eval.max_new_tokens]")
@click.option("--k", type=click.IntRange(min=1), help="Draft tokens per verification.  [default: the run's eval.k]")
@click.option("--topk", type=click.IntRange(min=1),
              help="Tree drafting: children per node (SGLang --speculative-eagle-topk), as eval.topk.")
@click.option("--num-draft-tokens", type=click.IntRange(min=2),
              help="Tree drafting: tokens verified per round (SGLang --speculative-num-draft-tokens), as "
                   "eval.num_draft_tokens.")
@click.option("--dtype", type=click.Choice(["float32", "float64", "bfloat16", "float16"]),
              help="Target and draft dtype.  [default: the run's eval.dtype, else its target's]")
@click.option("--output-dir", type=click.Path(file_okay=False), default="runs/bench", show_default=True,
              help="Where bench.md, bench.png and bench.json go.")
def command(paths: tuple[str, ...], prompt_files: tuple[str, ...], num_prompts: int | None,
            max_new_tokens: int | None, k: int | None, topk: int | None, num_draft_tokens: int | None,
            dtype: str | None, output_dir: str) -> None:
    """Benchmark drafts: runs, checkpoints or exports, on the same prompts, one table and one chart."""
    import dataclasses

    from specforge.evaluation.bench_report import bar_chart, markdown
    from specforge.run.bench import bench

    out = Path(output_dir)
    report = bench(paths, prompts=prompt_files, out_dir=out, num_prompts=num_prompts, max_new_tokens=max_new_tokens,
                   k=k, tree={"topk": topk, "num_draft_tokens": num_draft_tokens}, dtype=dtype)
    text = markdown(report.rows, report.runs, report.prompt_files)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text, encoding="utf-8")
    (out / "bench.json").write_text(json.dumps({"runs": report.runs, "prompt_files": report.prompt_files,
                                                "rows": [dataclasses.asdict(r) for r in report.rows]},
                                               indent=2) + "\n", encoding="utf-8")
    chart = bar_chart(report.rows, out / "bench.png")
    click.echo(text)
    click.echo(f"wrote {out / 'bench.md'}, {out / 'bench.json'}" + (f" and {chart}" if chart else ""))
