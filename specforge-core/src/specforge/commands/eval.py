"""`specforge eval RUN_OR_EXPORT`: acceptance length by real speculative decoding."""

from __future__ import annotations

import json

import click


@click.command("eval")
@click.argument("path", type=click.Path())
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False),
              help="Conversations JSONL (default: the run's held-out prompts; an export of the embedded "
                   "demo uses the demo's).")
@click.option("--k", type=click.IntRange(min=1), help="Draft tokens per verification (default: the run's eval.k).")
@click.option("--topk", type=click.IntRange(min=1),
              help="Draft a tree: children per node (SGLang's --speculative-eagle-topk; default: the run's "
                   "eval.topk); --k is then the depth (--speculative-num-steps).")
@click.option("--num-draft-tokens", type=click.IntRange(min=0),
              help="Tokens verified per round, the root included (SGLang's --speculative-num-draft-tokens; "
                   "default: the run's eval.num_draft_tokens).")
@click.option("--num-prompts", type=click.IntRange(min=1),
              help="How many prompts (default: the run's eval.num_prompts).")
@click.option("--dtype", type=click.Choice(["float32", "float64", "bfloat16", "float16"]),
              help="Target and draft dtype for evaluation (default: the run's eval.dtype, else its target's).")
def command(path: str, prompts: str | None, k: int | None, topk: int | None, num_draft_tokens: int | None,
            num_prompts: int | None, dtype: str | None) -> None:
    """Measure τ of a run (its newest checkpoint), a checkpoint or an export; lossless is checked."""
    from specforge.run.evaluate import evaluate_path

    report = evaluate_path(path, prompts=prompts, k=k, num_prompts=num_prompts, dtype=dtype, topk=topk,
                           num_draft_tokens=num_draft_tokens)
    click.echo(json.dumps(report, indent=2))
    draft = report["draft"]
    shape = (f"tree {draft['num_steps']}/{draft['topk']}/{draft['num_draft_tokens']}" if draft["topk"] > 1
             else f"k={report['k']}")
    click.echo(f"acceptance length τ: {report['tau']:.2f} (strategy {report['strategy']}, {shape}, "
               f"{report['num_prompts']} prompts, lossless checked: {report['lossless_checked']})")
